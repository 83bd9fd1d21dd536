#include "broker/ctl/watch.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <thread>

#include "broker/ctl/exit_codes.h"
#include "broker/ctl/format.h"
#include "migratefs/migration_service.h"

namespace migratefs::ctl {

using control::ControlClient;
using nlohmann::json;

namespace {

// Redraws a block of lines in place: cursor up over the previous block, then each line
// cleared and rewritten. Lines only ever get added, so the block never shrinks.
class TerminalView {
 public:
  void Draw(const std::vector<std::string>& lines) {
    std::string out;
    if (drawn_ > 0) out += "\r\x1b[" + std::to_string(drawn_) + "A";
    for (const std::string& line : lines) out += "\r\x1b[2K" + line + "\n";
    drawn_ = lines.size();
    std::cout << out << std::flush;
  }

 private:
  size_t drawn_ = 0;
};

// The migrations to show this round, in the daemon's order.
std::vector<json> Select(const json& listed, const std::vector<std::string>& ids) {
  std::vector<json> selected;
  if (!listed.is_array()) return selected;
  for (const json& m : listed) {
    std::string id = IdOf(m);
    if (ids.empty() || std::find(ids.begin(), ids.end(), id) != ids.end()) selected.push_back(m);
  }
  return selected;
}


}  // namespace

int RunWatch(const GlobalOptions& options, const std::vector<std::string>& ids) {
  Connection connection = ConnectOrReport(options);
  if (!connection.client) return connection.exit_code;
  ControlClient& client = *connection.client;

  const bool terminal = !options.json && isatty(STDOUT_FILENO);
  const auto interval = terminal ? std::chrono::milliseconds(250) : std::chrono::seconds(1);
  TerminalView view;

  for (;;) {
    std::string request = "{\"op\":\"list\"}\n";
    if (Status sent = client.Send(request); !sent) return ReportTransportError(sent.error());
    Result<std::string> raw = client.ReadLine(RequestTimeout(options, false));
    if (!raw) return ReportTransportError(raw.error());
    json answer = json::parse(raw.value(), nullptr, false);
    if (!answer.is_object()) {
      std::cerr << "migratectl: the daemon's answer is not JSON: " << raw.value() << "\n";
      return kExitNoAnswer;
    }
    if (answer.value("ok", false) != true) return ReportDaemonError(answer);

    std::vector<json> shown =
        Select(answer.contains("migrations") ? answer["migrations"] : json(), ids);
    for (const std::string& id : ids) {
      bool present = std::any_of(shown.begin(), shown.end(),
                                 [&](const json& m) { return IdOf(m) == id; });
      if (!present) {
        std::cerr << "migratectl: unknown_id: no migration with id \"" << id << "\"\n";
        return kExitDaemonError;
      }
    }
    if (shown.empty()) {
      std::cerr << "migratectl: no migrations to watch\n";
      return kExitOk;
    }

    if (options.json) {
      std::cout << raw.value() << std::endl;
    } else if (terminal) {
      std::vector<std::string> lines;
      for (const json& m : shown) lines.push_back(BarLine(m, 30));
      view.Draw(lines);
    } else {
      for (const json& m : shown) std::cout << SummaryLine(m) << "\n";
      std::cout << std::flush;
    }

    bool all_over = std::all_of(shown.begin(), shown.end(),
                                [](const json& m) { return IsTerminalPhase(PhaseOf(m)); });
    if (all_over) {
      bool all_finished = std::all_of(shown.begin(), shown.end(), [](const json& m) {
        return PhaseOf(m) == phase::kFinished;
      });
      return all_finished ? kExitOk : kExitBadOutcome;
    }
    std::this_thread::sleep_for(interval);
  }
}

}  // namespace migratefs::ctl
