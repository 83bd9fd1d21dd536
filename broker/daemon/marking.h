// Packet marking per priority class (seed 001: DSCP/TOS and SO_PRIORITY on the
// migration's sockets). The broker passes it on `start` as the optional fields
// "dscp" (a DSCP name such as "AF41", or a number 0..63) and "so_priority" (int);
// a class without marking adds neither field, so a daemon that does not know them is
// unaffected. Configured in broker.toml:
//   [marking.high]
//   dscp = "AF41"
//   so_priority = 6
// broker/daemon/README.md "Configuration".
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "migratefs/status.h"

namespace migratefs::broker {

struct Marking {
  std::optional<std::string> dscp_name;  // upper-case DSCP name, e.g. "AF41", "EF", "CS6"
  std::optional<int> dscp_code;          // or a plain code point 0..63
  std::optional<int> so_priority;        // SO_PRIORITY, 0..6 for unprivileged senders; 0..2^31-1

  bool empty() const { return !dscp_name && !dscp_code && !so_priority; }
};

// The DSCP code point of a standard name (DF/BE, LE, CS0..CS7, AF11..AF43, EF, VA), case
// insensitive; nullopt for anything else.
std::optional<int> DscpCodeOf(const std::string& name);

// Adds "dscp" (the name as configured, upper-cased, or the number) and "so_priority"
// to a start request when set; leaves the request alone otherwise.
void AddMarking(const Marking& marking, nlohmann::json* start_request);

}  // namespace migratefs::broker
