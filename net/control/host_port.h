// "HOST:PORT" strings as the control API and the metrics option take them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "migratefs/status.h"

namespace migratefs::control {

struct HostPort {
  std::string host;  // a name or an IPv4 address, or an IPv6 address without brackets
  uint16_t port = 0;
};

// Accepts "name:7000", "10.0.0.2:7000" and "[fd00::2]:7000". The host must be non-empty
// and made of letters, digits, '.', '-', '_' (plus ':' and '%' inside brackets); the
// port a decimal in 1..65535. Anything else is invalid_argument.
Result<HostPort> SplitHostPort(std::string_view text);

}  // namespace migratefs::control
