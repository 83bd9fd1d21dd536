#include "net/control/request.h"

#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <set>
#include <utility>
#include <vector>

#include "migratefs/control_protocol.h"
#include "net/control/host_port.h"
#include "net/socket_marking.h"

namespace migratefs::control {
namespace {

using nlohmann::json;

Error BadRequest(std::string message) { return MakeError(errc::kBadRequest, std::move(message)); }
Error InvalidArgument(std::string message) {
  return MakeError(errc::kInvalidArgument, std::move(message));
}

std::string Quoted(std::string_view key) { return "\"" + std::string(key) + "\""; }

// Typed access to the fields of one request object. Remembers which fields an op read,
// so that whatever is left over can be reported as unexpected.
class Fields {
 public:
  explicit Fields(const json& object) : object_(object) {}

  // A non-empty string (ids, image names).
  Result<std::string> RequiredName(const char* key) {
    const json* value = Find(key);
    if (value == nullptr) return Missing(key, "a string");
    return AsName(key, *value);
  }

  Result<std::optional<std::string>> OptionalName(const char* key) {
    const json* value = Find(key);
    if (value == nullptr) return std::optional<std::string>();
    Result<std::string> name = AsName(key, *value);
    if (!name) return name.error();
    return std::optional<std::string>(std::move(name.value()));
  }

  Result<bool> OptionalBool(const char* key, bool if_absent) {
    const json* value = Find(key);
    if (value == nullptr) return if_absent;
    if (!value->is_boolean()) return Mistyped(key, "true or false", *value);
    return value->get<bool>();
  }

  Result<uint64_t> RequiredKbps(const char* key) {
    const json* value = Find(key);
    if (value == nullptr) return Missing(key, "a rate in KB/s");
    return AsKbps(key, *value);
  }

  Result<uint64_t> OptionalKbps(const char* key) {
    const json* value = Find(key);
    if (value == nullptr) return uint64_t{0};
    return AsKbps(key, *value);
  }

  Result<RateKind> OptionalRateKind(const char* key) {
    auto what = OptionalChoice(key, "network", "disk", false);
    if (!what) return what.error();
    return what.value() == "disk" ? RateKind::kDisk : RateKind::kNetwork;
  }

  // A DSCP: a name ("AF41") or a number 0..63, as a JSON string or integer
  // (net/socket_marking.h). Absent: unset.
  Result<std::optional<uint8_t>> OptionalDscp(const char* key) {
    const json* value = Find(key);
    if (value == nullptr) return std::optional<uint8_t>();
    std::string text;
    if (value->is_string()) {
      text = value->get_ref<const std::string&>();
    } else if (value->is_number_unsigned()) {
      text = std::to_string(value->get<uint64_t>());
    } else if (value->is_number_integer()) {
      return InvalidArgument("field " + Quoted(key) + " must not be negative; a DSCP is 0..63 or a name (AF41, EF, CS6)");
    } else {
      return Mistyped(key, "a DSCP name (\"AF41\", \"EF\", \"CS6\") or a number 0..63", *value);
    }
    Result<uint8_t> dscp = net::ParseDscp(text);
    if (!dscp) return InvalidArgument("field " + Quoted(key) + ": " + dscp.error().message);
    return std::optional<uint8_t>(dscp.value());
  }

  // A socket priority: a JSON integer 0..4294967295. Absent: unset.
  Result<std::optional<uint32_t>> OptionalSocketPriority(const char* key) {
    const json* value = Find(key);
    if (value == nullptr) return std::optional<uint32_t>();
    const std::string range = "0..4294967295 (0..6 need no privilege)";
    if (value->is_number_unsigned()) {
      uint64_t n = value->get<uint64_t>();
      if (n > UINT32_MAX) return InvalidArgument("field " + Quoted(key) + " is above the maximum; must be " + range);
      return std::optional<uint32_t>(uint32_t(n));
    }
    if (value->is_number_integer()) {
      return InvalidArgument("field " + Quoted(key) + " must not be negative; must be " + range);
    }
    return Mistyped(key, "a whole number 0..4294967295", *value);
  }

  // A whole number in [lo, hi]; absent: if_absent.
  Result<uint64_t> OptionalWhole(const char* key, uint64_t lo, uint64_t hi, uint64_t if_absent) {
    const json* value = Find(key);
    if (value == nullptr) return if_absent;
    return AsWhole(key, *value, lo, hi);
  }

  // A whole number in [lo, hi]; absent: missing, `what` saying more after the range.
  Result<uint64_t> RequiredWhole(const char* key, uint64_t lo, uint64_t hi, const char* what) {
    const json* value = Find(key);
    if (value == nullptr) {
      return Missing(key, ("a whole number " + std::to_string(lo) + ".." + std::to_string(hi) + what).c_str());
    }
    return AsWhole(key, *value, lo, hi);
  }

  // A finite JSON number in [lo, hi] (above lo when `lo_open`); absent: if_absent.
  Result<double> OptionalNumber(const char* key, double lo, double hi, bool lo_open, double if_absent) {
    const json* value = Find(key);
    if (value == nullptr) return if_absent;
    char range[96];
    std::snprintf(range, sizeof(range), "%s %g and at most %g", lo_open ? "above" : "at least", lo, hi);
    if (!value->is_number()) return Mistyped(key, (std::string("a number ") + range).c_str(), *value);
    const double number = value->get<double>();
    if (!std::isfinite(number) || number < lo || (lo_open && number == lo) || number > hi) {
      return InvalidArgument("field " + Quoted(key) + " must be " + range);
    }
    return number;
  }

  // One of two words, `first` or `second`; absent: nullopt, or missing when `required`.
  Result<std::optional<std::string>> OptionalChoice(const char* key, const char* first, const char* second,
                                                    bool required) {
    const std::string expected = Quoted(first) + " or " + Quoted(second);
    const json* value = Find(key);
    if (value == nullptr) {
      if (required) return Missing(key, expected.c_str());
      return std::optional<std::string>();
    }
    if (!value->is_string()) return Mistyped(key, expected.c_str(), *value);
    const std::string& text = value->get_ref<const std::string&>();
    if (text != first && text != second) return InvalidArgument("field " + Quoted(key) + " must be " + expected);
    return std::optional<std::string>(text);
  }

  // Fails on the first of `keys` present while the field they depend on does not have
  // the value they need: `needs` says which, e.g. "\"mirror\": \"async\"".
  Status RejectPresent(std::initializer_list<const char*> keys, const char* needs) const {
    for (const char* key : keys) {
      if (object_.contains(key)) return BadRequest("field " + Quoted(key) + " needs " + needs);
    }
    return OkStatus();
  }

  // "mirror" and its backlog fields (see request.h). `required`: set_mirror_mode.
  Result<MirrorMode> MirrorFields(bool required) {
    MirrorMode m;
    auto mirror = OptionalChoice("mirror", "sync", "async", required);
    if (!mirror) return mirror.error();
    m.async = mirror.value() == "async";
    if (!m.async) {
      Status alone = RejectPresent({"backlog_max_bytes", "backlog_low_pct", "backlog_high_pct"}, "\"mirror\": \"async\"");
      if (!alone) return alone.error();
    }
    auto max = OptionalWhole("backlog_max_bytes", 1, 1ull << 40, m.backlog_max_bytes);
    if (!max) return max.error();
    auto low = OptionalWhole("backlog_low_pct", 0, 99, m.backlog_low_pct);
    if (!low) return low.error();
    auto high = OptionalWhole("backlog_high_pct", 1, 100, m.backlog_high_pct);
    if (!high) return high.error();
    m.backlog_max_bytes = max.value();
    m.backlog_low_pct = unsigned(low.value());
    m.backlog_high_pct = unsigned(high.value());
    if (m.backlog_low_pct >= m.backlog_high_pct) {
      return InvalidArgument("field \"backlog_low_pct\" must be below \"backlog_high_pct\"");
    }
    return m;
  }

  // start's "mode" and its hybrid fields (see request.h): "precopy_pct" is required with
  // "hybrid" (there is no sensible default share), "postcopy_timeout_s" optional.
  Result<CopyMode> CopyFields() {
    CopyMode c;
    auto mode = OptionalChoice("mode", "precopy", "hybrid", false);
    if (!mode) return mode.error();
    c.hybrid = mode.value() == "hybrid";
    if (!c.hybrid) {
      Status alone = RejectPresent({"precopy_pct", "postcopy_timeout_s"}, "\"mode\": \"hybrid\"");
      if (!alone) return alone.error();
      return c;
    }
    auto pct = RequiredWhole("precopy_pct", 0, 100,
                             ": the share of data blocks on the target before completion; required with \"mode\": \"hybrid\"");
    if (!pct) return pct.error();
    auto timeout = OptionalWhole("postcopy_timeout_s", 1, 86400, c.postcopy_timeout_s);
    if (!timeout) return timeout.error();
    c.precopy_pct = unsigned(pct.value());
    c.postcopy_timeout_s = timeout.value();
    return c;
  }

  Result<std::vector<std::string>> RequiredNameList(const char* key) {
    const json* value = Find(key);
    if (value == nullptr) return Missing(key, "an array of image names");
    if (!value->is_array()) return Mistyped(key, "an array of image names", *value);
    if (value->empty()) return BadRequest("field " + Quoted(key) + " must not be empty");
    std::vector<std::string> names;
    std::set<std::string_view> seen;
    for (const json& element : *value) {
      if (!element.is_string() || element.get_ref<const std::string&>().empty()) {
        return BadRequest("field " + Quoted(key) + " must hold non-empty strings only");
      }
      const std::string& name = element.get_ref<const std::string&>();
      if (!seen.insert(name).second) {
        return InvalidArgument("field " + Quoted(key) + " names \"" + name + "\" twice");
      }
      names.push_back(name);
    }
    return names;
  }

  Result<std::string> RequiredHostPort(const char* key) {
    Result<std::string> text = RequiredName(key);
    if (!text) return text;
    Result<HostPort> parsed = SplitHostPort(text.value());
    if (!parsed) return InvalidArgument("field " + Quoted(key) + ": " + parsed.error().message);
    return text;
  }

  // Call last: fails on the first field that no accessor asked for.
  Status RejectUnread() const {
    for (const auto& [key, unused] : object_.items()) {
      if (read_.count(key) == 0) {
        return BadRequest("unexpected field " + Quoted(key) + " for this op");
      }
    }
    return OkStatus();
  }

 private:
  const json* Find(const char* key) {
    read_.insert(key);
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }

  static Error Missing(const char* key, const char* expected) {
    return BadRequest("missing field " + Quoted(key) + " (" + expected + ")");
  }

  static Error Mistyped(const char* key, const char* expected, const json& got) {
    return BadRequest("field " + Quoted(key) + " must be " + expected + ", got " +
                      got.type_name());
  }

  static Result<std::string> AsName(const char* key, const json& value) {
    if (!value.is_string()) return Mistyped(key, "a string", value);
    const std::string& text = value.get_ref<const std::string&>();
    if (text.empty()) return BadRequest("field " + Quoted(key) + " must not be empty");
    return text;
  }

  static Result<uint64_t> AsWhole(const char* key, const json& value, uint64_t lo, uint64_t hi) {
    const std::string range = std::to_string(lo) + ".." + std::to_string(hi);
    if (value.is_number_unsigned()) {
      uint64_t n = value.get<uint64_t>();
      if (n < lo || n > hi) return InvalidArgument("field " + Quoted(key) + " must be " + range);
      return n;
    }
    if (value.is_number_integer()) return InvalidArgument("field " + Quoted(key) + " must be " + range);
    return Mistyped(key, ("a whole number " + range).c_str(), value);
  }

  static Result<uint64_t> AsKbps(const char* key, const json& value) {
    const std::string limit_text = "0.." + std::to_string(kMaxLimitKbps) + " KB/s";
    if (value.is_number_unsigned()) {
      uint64_t kbps = value.get<uint64_t>();
      if (kbps > kMaxLimitKbps) {
        return InvalidArgument("field " + Quoted(key) + " is above the maximum; must be " +
                               limit_text + " (0 = unlimited)");
      }
      return kbps;
    }
    if (value.is_number_integer()) {  // nlohmann stores only negative integers here
      return InvalidArgument("field " + Quoted(key) + " must not be negative; must be " +
                             limit_text + " (0 = unlimited)");
    }
    if (value.is_number_float()) {
      double number = value.get<double>();
      if (number < 0) {
        return InvalidArgument("field " + Quoted(key) + " must not be negative");
      }
      if (number > static_cast<double>(kMaxLimitKbps)) {
        return InvalidArgument("field " + Quoted(key) + " is above the maximum; must be " +
                               limit_text);
      }
      if (number != std::floor(number)) {
        return BadRequest("field " + Quoted(key) + " must be a whole number of KB/s");
      }
      return static_cast<uint64_t>(number);
    }
    return Mistyped(key, "a whole number of KB/s", value);
  }

  const json& object_;
  std::set<std::string, std::less<>> read_{"op", "req"};
};

// Parsers of the individual ops. Each reads its fields; ParseRequest rejects leftovers.

Result<Command> ParseStart(Fields& fields) {
  StartCommand command;
  auto images = fields.RequiredNameList("images");
  if (!images) return images.error();
  auto target = fields.RequiredHostPort("target");
  if (!target) return target.error();
  auto network = fields.OptionalKbps("network_kbps");
  if (!network) return network.error();
  auto disk = fields.OptionalKbps("disk_kbps");
  if (!disk) return disk.error();
  auto overwrite = fields.OptionalBool("overwrite", false);
  if (!overwrite) return overwrite.error();
  auto force = fields.OptionalBool("force", false);
  if (!force) return force.error();
  auto dscp = fields.OptionalDscp("dscp");
  if (!dscp) return dscp.error();
  auto so_priority = fields.OptionalSocketPriority("so_priority");
  if (!so_priority) return so_priority.error();
  auto mirror = fields.MirrorFields(false);
  if (!mirror) return mirror.error();
  auto copy = fields.CopyFields();
  if (!copy) return copy.error();
  command.request.mirror = mirror.value();
  command.request.copy = copy.value();
  command.request.dscp = dscp.value();
  command.request.so_priority = so_priority.value();
  command.request.force = force.value();
  command.request.images = std::move(images.value());
  command.request.overwrite = overwrite.value();
  command.request.target = std::move(target.value());
  command.request.network_kbps = network.value();
  command.request.disk_kbps = disk.value();
  return Command(std::move(command));
}

Result<Command> ParseSetLimit(Fields& fields, RateKind kind) {
  auto id = fields.RequiredName("id");
  if (!id) return id.error();
  auto kbps = fields.RequiredKbps("kbps");
  if (!kbps) return kbps.error();
  return Command(SetLimitCommand{std::move(id.value()), kind, kbps.value()});
}

Result<Command> ParseSetMirrorMode(Fields& fields) {
  auto id = fields.RequiredName("id");
  if (!id) return id.error();
  auto mode = fields.MirrorFields(true);
  if (!mode) return mode.error();
  return Command(SetMirrorModeCommand{std::move(id.value()), mode.value()});
}

Result<Command> ParseQueryProgress(Fields& fields) {
  auto id = fields.RequiredName("id");
  if (!id) return id.error();
  auto what = fields.OptionalRateKind("what");
  if (!what) return what.error();
  return Command(QueryProgressCommand{std::move(id.value()), what.value()});
}

Result<Command> ParseCancel(Fields& fields) {
  auto id = fields.RequiredName("id");
  if (!id) return id.error();
  auto keep = fields.OptionalBool("keep_partial", false);
  if (!keep) return keep.error();
  return Command(CancelCommand{std::move(id.value()), keep.value()});
}

// For the ops whose only field is the migration id.
template <typename CommandWithId>
Result<Command> ParseIdOnly(Fields& fields) {
  auto id = fields.RequiredName("id");
  if (!id) return id.error();
  return Command(CommandWithId{std::move(id.value())});
}

Result<Command> ParseStatus(Fields& fields) {
  auto id = fields.OptionalName("id");
  if (!id) return id.error();
  return Command(StatusCommand{std::move(id.value())});
}

Result<Command> ParseProfile(Fields& fields) {
  auto images = fields.RequiredNameList("images");
  if (!images) return images.error();
  auto seconds = fields.RequiredWhole("seconds", 1, kMaxProfileSeconds, ": how long to count the writes");
  if (!seconds) return seconds.error();
  ProfileCommand command;
  command.request.images = std::move(images.value());
  command.request.seconds = seconds.value();
  return Command(std::move(command));
}

Result<Command> ParsePredict(Fields& fields) {
  auto images = fields.RequiredNameList("images");
  if (!images) return images.error();
  auto net = fields.RequiredKbps("net_kbps");
  if (!net) return net.error();
  if (net.value() == 0) {
    return InvalidArgument("field \"net_kbps\" must be above 0: the link rate the migration will get, KB/s");
  }
  auto deadline = fields.OptionalNumber("deadline_s", 0, 1e9, false, 0);
  if (!deadline) return deadline.error();
  auto rtt = fields.OptionalNumber("rtt_ms", 0, 60000, false, 5);
  if (!rtt) return rtt.error();
  auto step = fields.OptionalNumber("step", 0, 100, true, 5);
  if (!step) return step.error();
  PredictCommand command;
  command.request.images = std::move(images.value());
  command.request.net_kbps = net.value();
  command.request.deadline_s = deadline.value();
  command.request.rtt_ms = rtt.value();
  command.request.step = step.value();
  return Command(std::move(command));
}

Result<Command> ParseCommand(const std::string& op, Fields& fields) {
  if (op == op::kStart) return ParseStart(fields);
  if (op == op::kSetNetworkLimit) return ParseSetLimit(fields, RateKind::kNetwork);
  if (op == op::kSetDiskLimit) return ParseSetLimit(fields, RateKind::kDisk);
  if (op == op::kSetMirrorMode) return ParseSetMirrorMode(fields);
  if (op == op::kQueryProgress) return ParseQueryProgress(fields);
  if (op == op::kQueryCompletion) return ParseIdOnly<QueryCompletionCommand>(fields);
  if (op == op::kFinish) return ParseIdOnly<FinishCommand>(fields);
  if (op == op::kCancel) return ParseCancel(fields);
  if (op == op::kVerify) return ParseIdOnly<VerifyCommand>(fields);
  if (op == op::kRelease) return ParseIdOnly<ReleaseCommand>(fields);
  if (op == op::kList) return Command(ListCommand{});
  if (op == op::kStatus) return ParseStatus(fields);
  if (op == op::kEvents) return Command(EventsCommand{});
  if (op == op::kIncoming) return Command(IncomingCommand{});
  if (op == op::kProfile) return ParseProfile(fields);
  if (op == op::kPredict) return ParsePredict(fields);
  std::string shown = op.size() > 64 ? op.substr(0, 64) + "..." : op;
  return MakeError(errc::kUnknownOp, "unknown op \"" + shown +
                                         "\"; see net/control/README.md for the list");
}

// nlohmann's messages start with "[json.exception.parse_error.101] "; drop that.
std::string ParseErrorText(const json::exception& e) {
  std::string text = e.what();
  size_t end_of_tag = text.find("] ");
  if (text.rfind("[json.exception", 0) == 0 && end_of_tag != std::string::npos) {
    text.erase(0, end_of_tag + 2);
  }
  return text;
}

}  // namespace

ParsedRequest ParseRequest(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > kMaxRequestLineBytes) {
    return {std::nullopt, MakeError(errc::kTooLarge,
                                    "request line longer than " +
                                        std::to_string(kMaxRequestLineBytes) + " bytes")};
  }

  json object;
  try {
    object = json::parse(line.begin(), line.end());
  } catch (const json::exception& e) {  // parse_error, or out_of_range for 1e400
    return {std::nullopt, BadRequest("malformed JSON: " + ParseErrorText(e))};
  }
  if (!object.is_object()) {
    return {std::nullopt, BadRequest(std::string("request must be a JSON object, got ") +
                                     object.type_name())};
  }

  ParsedRequest parsed{std::nullopt, BadRequest("unparsed")};
  auto tag = object.find("req");
  if (tag != object.end()) {
    if (!tag->is_primitive()) {
      parsed.command = BadRequest("field \"req\" must be a JSON scalar, got " +
                                  std::string(tag->type_name()));
      return parsed;
    }
    parsed.tag = *tag;
  }

  auto op = object.find("op");
  if (op == object.end()) {
    parsed.command = BadRequest("missing field \"op\" (a string)");
    return parsed;
  }
  if (!op->is_string()) {
    parsed.command =
        BadRequest("field \"op\" must be a string, got " + std::string(op->type_name()));
    return parsed;
  }

  Fields fields(object);
  Result<Command> command = ParseCommand(op->get_ref<const std::string&>(), fields);
  if (command) {
    Status leftovers = fields.RejectUnread();
    if (!leftovers) command = leftovers.error();
  }
  parsed.command = std::move(command);
  return parsed;
}

}  // namespace migratefs::control
