#include "net/control/host_port.h"

#include <cctype>

namespace migratefs::control {
namespace {

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}

bool IsV6Char(char c) {
  return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.' || c == '%' ||
         IsNameChar(c);  // '%' starts a zone id such as "eth0"
}

Error Invalid(std::string_view text, const char* why) {
  return MakeError(errc::kInvalidArgument,
                   "\"" + std::string(text) + "\" is not HOST:PORT: " + why);
}

}  // namespace

Result<HostPort> SplitHostPort(std::string_view text) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return Invalid(text, "no port");
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);

  HostPort out;
  if (!host.empty() && host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return Invalid(text, "unbalanced '['");
    host = host.substr(1, host.size() - 2);
    for (char c : host) {
      if (!IsV6Char(c)) return Invalid(text, "bad character in IPv6 address");
    }
  } else {
    if (host.empty()) return Invalid(text, "empty host");
    for (char c : host) {
      if (!IsNameChar(c)) return Invalid(text, "bad character in host (IPv6 needs [brackets])");
    }
  }
  out.host = std::string(host);

  if (port.empty() || port.size() > 5) return Invalid(text, "port must be 1..65535");
  uint32_t value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return Invalid(text, "port must be a decimal number");
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value == 0 || value > 65535) return Invalid(text, "port must be 1..65535");
  out.port = static_cast<uint16_t>(value);
  return out;
}

}  // namespace migratefs::control
