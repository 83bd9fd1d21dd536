// Parsing and validation of one control-socket request line into a typed command.
//
// Pure: no I/O, no service calls, no globals; safe on any input (it is the libFuzzer
// target). The rules, all with errc codes from migratefs/status.h:
//   - a line over kMaxRequestLineBytes            -> too_large
//   - not JSON, not a JSON object                 -> bad_request
//   - "op" missing or not a string                -> bad_request
//   - "op" not one of migratefs/control_protocol.h -> unknown_op
//   - a required field missing, a field of the wrong JSON type, an empty string where a
//     name is needed, or a field the op does not take (a typo such as "keep_partal"
//     must not silently mean "false")          -> bad_request; the message names the field
//   - a well-typed value out of range              -> invalid_argument, naming the field
// Rate fields ("kbps", "network_kbps", "disk_kbps") are whole numbers of KB/s in
// [0, kMaxLimitKbps]; 0 = unlimited. A negative number or one above the maximum is
// invalid_argument; a fraction or a non-number is bad_request. "target" must be
// HOST:PORT ("[v6addr]:PORT" for IPv6) with a port in 1..65535, else invalid_argument.
// "images" is a non-empty array of non-empty strings without duplicates; whether a name
// stays inside the served directory is the migration service's check (bad_name).
// start's optional "dscp" is a DSCP name or number 0..63 as a JSON string or integer,
// "so_priority" an integer 0..4294967295 (net/socket_marking.h): an unknown name or a
// number out of range is invalid_argument, any other JSON type bad_request.
// start's and set_mirror_mode's "mirror" is "sync" or "async"; "backlog_max_bytes" a
// whole number 1..2^40, "backlog_low_pct" / "backlog_high_pct" whole numbers with
// low < high <= 100 (defaults 64 MiB, 5, 70); the backlog fields only with "async".
// start's "mode" is "precopy" (default) or "hybrid"; with "hybrid" only, "precopy_pct"
// (required: a whole number 0..100) and "postcopy_timeout_s" (1..86400, default 600).
// Either of them without "mode": "hybrid" is bad_request naming it, like the backlog
// fields without "async".
// profile: "images" and "seconds" (required, a whole number 1..3600). predict: "images",
// "net_kbps" (required, a rate as above but above 0), optional "deadline_s" (a number
// >= 0, 0 = none), "rtt_ms" (0..60000, default 5), "step" (in (0, 100], default 5).
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "migratefs/migration_service.h"
#include "migratefs/status.h"

namespace migratefs::control {

struct StartCommand {
  StartRequest request;
};
struct SetLimitCommand {  // set_network_limit (kind = kNetwork) and set_disk_limit
  std::string id;
  RateKind kind = RateKind::kNetwork;
  uint64_t kbps = 0;
};
struct SetMirrorModeCommand {
  std::string id;
  MirrorMode mode;
};
struct QueryProgressCommand {
  std::string id;
  RateKind what = RateKind::kNetwork;  // "what" is optional; network when absent
};
struct QueryCompletionCommand {
  std::string id;
};
struct FinishCommand {
  std::string id;
};
struct CancelCommand {
  std::string id;
  bool keep_partial = false;
};
struct VerifyCommand {
  std::string id;
};
struct ReleaseCommand {
  std::string id;
};
struct ListCommand {};
struct StatusCommand {
  std::optional<std::string> id;  // absent: the daemon's status and every migration
};
struct EventsCommand {};
struct IncomingCommand {};  // the copies this daemon receives (MigrationService::Incoming)
struct ProfileCommand {    // MigrationService::Profile; blocks for request.seconds
  ProfileRequest request;
};
struct PredictCommand {    // MigrationService::Predict
  PredictRequest request;
};

using Command =
    std::variant<StartCommand, SetLimitCommand, SetMirrorModeCommand, QueryProgressCommand, QueryCompletionCommand,
                 FinishCommand, CancelCommand, VerifyCommand, ReleaseCommand, ListCommand,
                 StatusCommand, EventsCommand, IncomingCommand, ProfileCommand, PredictCommand>;

struct ParsedRequest {
  // The request's "req" value, to echo in the answer. Set whenever the line was a JSON
  // object whose "req" is a scalar, even if the rest of the request is bad, so that
  // error answers can be matched too.
  std::optional<nlohmann::json> tag;
  Result<Command> command;
};

// `line` excludes the '\n'; one trailing '\r' is ignored.
ParsedRequest ParseRequest(std::string_view line);

}  // namespace migratefs::control
