// "HOST:PORT" parsing shared by the peer client and server.
#pragma once

#include <cstdint>
#include <string>

#include "migratefs/status.h"

namespace migratefs::net {

struct HostPort {
  std::string host;  // without brackets; may be empty (= any address, for listening)
  std::string port;  // decimal
};

// Accepts "host:port", "[v6addr]:port", ":port". Error: kInvalidArgument.
Result<HostPort> ParseHostPort(const std::string& s);

}  // namespace migratefs::net
