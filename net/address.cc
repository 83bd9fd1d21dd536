#include "net/address.h"

namespace migratefs::net {

Result<HostPort> ParseHostPort(const std::string& s) {
  auto bad = [&](const char* why) {
    return MakeError(errc::kInvalidArgument, "address \"" + s + "\": " + why + " (want HOST:PORT)");
  };
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos) return bad("no port");
  HostPort hp;
  hp.host = s.substr(0, colon);
  hp.port = s.substr(colon + 1);
  if (hp.host.size() >= 2 && hp.host.front() == '[' && hp.host.back() == ']') {
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  } else if (hp.host.find(':') != std::string::npos) {
    return bad("IPv6 addresses need brackets");
  }
  if (hp.port.empty() || hp.port.size() > 5) return bad("bad port");
  unsigned long v = 0;
  for (char c : hp.port) {
    if (c < '0' || c > '9') return bad("bad port");
    v = v * 10 + static_cast<unsigned long>(c - '0');
  }
  if (v > 65535) return bad("port out of range");
  return hp;
}

}  // namespace migratefs::net
