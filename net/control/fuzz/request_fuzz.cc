// libFuzzer target for the control-socket request parser (net/control/request.h): any
// bytes must parse to a command or an Error without crashing, and whatever parses must
// satisfy the parser's contract and render back to one valid JSON line.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "migratefs/control_protocol.h"
#include "net/control/request.h"
#include "net/control/response.h"

namespace {

using namespace migratefs;
using namespace migratefs::control;

void Check(bool condition) {
  if (!condition) __builtin_trap();
}

// The promises request.h makes about every command it returns.
struct ContractCheck {
  void operator()(const StartCommand& c) {
    Check(!c.request.images.empty());
    for (const auto& image : c.request.images) Check(!image.empty());
    Check(!c.request.target.empty());
    Check(c.request.network_kbps <= kMaxLimitKbps && c.request.disk_kbps <= kMaxLimitKbps);
    Check(c.request.mirror.backlog_low_pct < c.request.mirror.backlog_high_pct);
    const CopyMode& copy = c.request.copy;
    if (copy.hybrid) {
      Check(copy.precopy_pct <= 100 && copy.postcopy_timeout_s >= 1 && copy.postcopy_timeout_s <= 86400);
    } else {  // the hybrid fields are refused without "mode": "hybrid"
      Check(copy.precopy_pct == CopyMode{}.precopy_pct && copy.postcopy_timeout_s == CopyMode{}.postcopy_timeout_s);
    }
  }
  void operator()(const SetLimitCommand& c) { Check(!c.id.empty() && c.kbps <= kMaxLimitKbps); }
  void operator()(const SetMirrorModeCommand& c) {
    const MirrorMode& m = c.mode;
    Check(!c.id.empty() && m.backlog_max_bytes > 0 && m.backlog_low_pct < m.backlog_high_pct &&
          m.backlog_high_pct <= 100);
  }
  void operator()(const QueryProgressCommand& c) { Check(!c.id.empty()); }
  void operator()(const QueryCompletionCommand& c) { Check(!c.id.empty()); }
  void operator()(const FinishCommand& c) { Check(!c.id.empty()); }
  void operator()(const CancelCommand& c) { Check(!c.id.empty()); }
  void operator()(const VerifyCommand& c) { Check(!c.id.empty()); }
  void operator()(const ReleaseCommand& c) { Check(!c.id.empty()); }
  void operator()(const StatusCommand& c) { Check(!c.id || !c.id->empty()); }
  void operator()(const ListCommand&) {}
  void operator()(const EventsCommand&) {}
  void operator()(const IncomingCommand&) {}
  void operator()(const ProfileCommand& c) {
    Check(!c.request.images.empty());
    for (const auto& image : c.request.images) Check(!image.empty());
    Check(c.request.seconds >= 1 && c.request.seconds <= kMaxProfileSeconds);
  }
  void operator()(const PredictCommand& c) {
    const PredictRequest& r = c.request;
    Check(!r.images.empty());
    for (const auto& image : r.images) Check(!image.empty());
    Check(r.net_kbps >= 1 && r.net_kbps <= kMaxLimitKbps);
    Check(r.deadline_s >= 0 && r.deadline_s <= 1e9);
    Check(r.rtt_ms >= 0 && r.rtt_ms <= 60000);
    Check(r.step > 0 && r.step <= 100);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  ParsedRequest parsed = ParseRequest(line);
  if (parsed.tag) Check(parsed.tag->is_primitive());

  std::string answer;
  if (parsed.command.ok()) {
    std::visit(ContractCheck{}, parsed.command.value());
    answer = ToLine(OkAnswer(nullptr, parsed.tag));
  } else {
    const Error& error = parsed.command.error();
    Check(error.code == errc::kBadRequest || error.code == errc::kUnknownOp ||
          error.code == errc::kInvalidArgument || error.code == errc::kTooLarge);
    Check(!error.message.empty());
    answer = ToLine(ErrorAnswer(error, parsed.tag));
  }
  // One line, parseable: a client can always read the answer.
  Check(!answer.empty() && answer.back() == '\n');
  Check(answer.find('\n') == answer.size() - 1);
  Check(nlohmann::json::accept(std::string_view(answer).substr(0, answer.size() - 1)));
  return 0;
}
