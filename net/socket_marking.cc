#include "net/socket_marking.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace migratefs::net {
namespace {

Error Invalid(std::string message) { return MakeError(errc::kInvalidArgument, std::move(message)); }

constexpr const char* kDscpAccepted =
    "expected CS0..CS7, AF11..AF43 (AF<class 1-4><drop 1-3>), EF, DF/BE, LE, VA, or a number 0..63";

char Upper(char c) { return (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c; }

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Decimal digits only (no sign, no spaces), at most `max`; false on overflow.
bool ParseDecimal(std::string_view s, uint64_t max, uint64_t* out) {
  if (!AllDigits(s)) return false;
  uint64_t v = 0;
  for (char c : s) {
    v = v * 10 + uint64_t(c - '0');
    if (v > max) return false;
  }
  *out = v;
  return true;
}

bool ParseHex(std::string_view s, uint64_t max, uint64_t* out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (Upper(c) >= 'A' && Upper(c) <= 'F') {
      d = Upper(c) - 'A' + 10;
    } else {
      return false;
    }
    v = v * 16 + uint64_t(d);
    if (v > max) return false;
  }
  *out = v;
  return true;
}

std::string Errno(int err) { return std::string(strerrordesc_np(err) ? strerrordesc_np(err) : "unknown error"); }

Error SockoptError(const char* what, int value, int err) {
  std::string message = std::string("setsockopt(") + what + ", " + std::to_string(value) + "): " + Errno(err);
  if (err == EPERM || err == EACCES) message += " (socket priorities above 6 need CAP_NET_ADMIN or CAP_NET_RAW)";
  return MakeError(errc::kIo, message);
}

int SocketFamily(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
  return ss.ss_family;
}

// Whether an AF_INET6 socket is connected to an IPv4-mapped address (so it sends IPv4).
bool PeerIsV4Mapped(int fd) {
  sockaddr_in6 peer{};
  socklen_t len = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return false;
  return peer.sin6_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&peer.sin6_addr);
}

}  // namespace

Result<uint8_t> ParseDscp(std::string_view text) {
  if (text.empty()) return Invalid(std::string("empty DSCP; ") + kDscpAccepted);
  const std::string quoted = "\"" + std::string(text) + "\"";
  uint64_t n = 0;
  if (AllDigits(text)) {
    if (!ParseDecimal(text, kMaxDscp, &n)) return Invalid("DSCP " + quoted + " is out of range; " + kDscpAccepted);
    return uint8_t(n);
  }
  std::string up;
  for (char c : text) up += Upper(c);
  if (up == "EF") return uint8_t(46);
  if (up == "DF" || up == "BE") return uint8_t(0);  // default forwarding = CS0
  if (up == "LE") return uint8_t(1);                 // lower effort (RFC 8622)
  if (up == "VA") return uint8_t(44);                // voice admit (RFC 5865)
  if (up.size() == 3 && up.compare(0, 2, "CS") == 0 && up[2] >= '0' && up[2] <= '7') {
    return uint8_t(8 * (up[2] - '0'));
  }
  if (up.size() == 4 && up.compare(0, 2, "AF") == 0 && up[2] >= '1' && up[2] <= '4' && up[3] >= '1' &&
      up[3] <= '3') {
    return uint8_t(8 * (up[2] - '0') + 2 * (up[3] - '0'));
  }
  return Invalid("unknown DSCP " + quoted + "; " + kDscpAccepted);
}

std::string DscpName(uint8_t dscp) {
  if (dscp == 46) return "EF";
  if (dscp == 44) return "VA";
  if (dscp == 1) return "LE";
  if (dscp % 8 == 0 && dscp <= 56) return "CS" + std::to_string(dscp / 8);
  const unsigned cls = dscp / 8, drop = (dscp % 8) / 2;
  if (cls >= 1 && cls <= 4 && dscp % 2 == 0 && drop >= 1 && drop <= 3) {
    return "AF" + std::to_string(cls) + std::to_string(drop);
  }
  return std::to_string(dscp);
}

Result<uint32_t> ParseSocketPriority(std::string_view text) {
  const std::string quoted = "\"" + std::string(text) + "\"";
  const std::string accepted = "; expected a number 0..4294967295 (decimal or 0x hex; 0..6 need no privilege)";
  uint64_t n = 0;
  bool ok = false;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    ok = ParseHex(text.substr(2), UINT32_MAX, &n);
  } else {
    ok = ParseDecimal(text, UINT32_MAX, &n);
  }
  if (!ok) return Invalid("socket priority " + quoted + " is not valid" + accepted);
  return uint32_t(n);
}

Status ApplySocketMarking(int fd, const SocketMarking& marking) {
  if (marking.empty()) return OkStatus();
  if (marking.dscp) {
    if (*marking.dscp > kMaxDscp) return Invalid("DSCP " + std::to_string(*marking.dscp) + " is above 63");
    // The TOS / traffic-class byte: DSCP in the upper six bits, ECN in the lower two
    // (which the kernel manages itself for TCP and keeps whatever we pass there).
    const int tos = int(*marking.dscp) << 2;
    const int family = SocketFamily(fd);
    if (family == AF_INET) {
      if (::setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof tos) != 0) return SockoptError("IP_TOS", tos, errno);
    } else if (family == AF_INET6) {
      if (::setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof tos) != 0) {
        return SockoptError("IPV6_TCLASS", tos, errno);
      }
      // A dual-stack socket may carry IPv4 (a v4-mapped peer, or the children of a
      // listener on [::]); those packets take their TOS from IP_TOS. Linux accepts
      // IP_TOS on an AF_INET6 TCP socket; it is an error only where it matters.
      if (::setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof tos) != 0 && PeerIsV4Mapped(fd)) {
        return SockoptError("IP_TOS", tos, errno);
      }
    } else {
      return Invalid("DSCP marking needs an IPv4 or IPv6 socket");
    }
  }
  // After the TOS: setting IP_TOS reset the priority to rt_tos2priority(tos).
  if (marking.priority) {
    const int prio = static_cast<int>(*marking.priority);  // the kernel stores it as u32
    if (::setsockopt(fd, SOL_SOCKET, SO_PRIORITY, &prio, sizeof prio) != 0) {
      return SockoptError("SO_PRIORITY", prio, errno);
    }
  }
  return OkStatus();
}

Result<SocketMarking> ReadSocketMarking(int fd) {
  SocketMarking m;
  int tos = 0;
  socklen_t len = sizeof tos;
  const int family = SocketFamily(fd);
  int rc = -1;
  if (family == AF_INET) {
    rc = ::getsockopt(fd, IPPROTO_IP, IP_TOS, &tos, &len);
  } else if (family == AF_INET6) {
    rc = ::getsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, &len);
  } else {
    return Invalid("not an IPv4 or IPv6 socket");
  }
  if (rc != 0) return MakeError(errc::kIo, "getsockopt(TOS): " + Errno(errno));
  m.dscp = uint8_t((tos >> 2) & 0x3f);
  int prio = 0;
  len = sizeof prio;
  if (::getsockopt(fd, SOL_SOCKET, SO_PRIORITY, &prio, &len) != 0) {
    return MakeError(errc::kIo, "getsockopt(SO_PRIORITY): " + Errno(errno));
  }
  m.priority = static_cast<uint32_t>(prio);
  return m;
}

std::string DescribeMarking(const SocketMarking& marking) {
  if (marking.empty()) return "unmarked";
  std::string out;
  if (marking.dscp) out = "dscp " + DscpName(*marking.dscp) + " (" + std::to_string(*marking.dscp) + ")";
  if (marking.priority) out += (out.empty() ? "" : ", ") + std::string("so_priority ") + std::to_string(*marking.priority);
  return out;
}

}  // namespace migratefs::net
