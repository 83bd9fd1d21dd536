// Priority marking of a migration's peer connection (issue 12, item 3; seed 001): a
// DSCP code point for the IP header, so that switches and routers can queue migration
// traffic apart from the tenants', and a socket priority (skb->priority), which picks
// the class of the host's own qdisc (tc htb/prio) before the packet leaves.
//
// Both are optional. What is unset is never touched: the socket keeps the kernel's
// defaults (DSCP 0, priority 0, or whatever the system's policy sets).
//
// Names and numbers (RFC 2474, 2597, 3246, 4594, 5865, 8622), case-insensitive:
//   CS0..CS7  class selectors        = 8 * n         (CS0 = 0 = best effort)
//   AFxy      assured forwarding     = 8 * x + 2 * y (x = class 1..4, y = drop 1..3)
//   EF        expedited forwarding   = 46
//   DF, BE    default forwarding     = 0 (= CS0)
//   LE        lower effort           = 1  (RFC 8622)
//   VA        voice admit            = 44 (RFC 5865)
//   0..63     any code point as a decimal number
// Socket priorities are 0..4294967295 (decimal, or hex with 0x). 0..6 are the TC_PRIO_*
// bands (6 = TC_PRIO_INTERACTIVE) and need no privilege; anything above needs
// CAP_NET_ADMIN or CAP_NET_RAW (the daemon runs as root). A value equal to an htb
// leaf's classid (major << 16 | minor, e.g. 0x10010 for 1:10) puts the packets straight
// into that class without a filter.
//
// Pure parsing plus one thin setsockopt wrapper; nothing here keeps state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "migratefs/status.h"

namespace migratefs::net {

inline constexpr uint32_t kMaxDscp = 63;

struct SocketMarking {
  std::optional<uint8_t> dscp;       // 0..63; the TOS / traffic class byte is dscp << 2
  std::optional<uint32_t> priority;  // SO_PRIORITY

  bool empty() const { return !dscp && !priority; }
  // This marking with every field that `over` sets taken from `over`.
  SocketMarking OverriddenBy(const SocketMarking& over) const {
    return SocketMarking{over.dscp ? over.dscp : dscp, over.priority ? over.priority : priority};
  }
  bool operator==(const SocketMarking&) const = default;
};

// "AF41", "ef", "cs6", "46" -> the code point. Anything else (an unknown name, a
// number above 63, a sign, a suffix, an empty string) is invalid_argument with a
// message listing what is accepted.
Result<uint8_t> ParseDscp(std::string_view text);

// The canonical name of a code point ("AF41", "EF", "CS0" for 0, "LE", "VA"), or its
// decimal number when it has none ("13").
std::string DscpName(uint8_t dscp);

// "6", "0x10010" -> the priority; invalid_argument otherwise (empty, negative, above
// 4294967295, trailing characters).
Result<uint32_t> ParseSocketPriority(std::string_view text);

// Marks socket `fd`. The address family is read from the socket itself (getsockname):
//   AF_INET   IP_TOS = dscp << 2
//   AF_INET6  IPV6_TCLASS = dscp << 2; and IP_TOS as well when the socket is connected
//             to an IPv4-mapped address (::ffff:a.b.c.d): such a socket sends IPv4
//             packets, whose header takes the TOS from IP_TOS, not from the class.
// then SO_PRIORITY. The order matters: on Linux, changing IP_TOS also sets the
// socket's priority (to rt_tos2priority(tos)), which would undo an earlier
// SO_PRIORITY. For TCP the kernel keeps the ECN bits of the byte to itself.
// Applies to every later segment of a connected socket; set before connect() it also
// marks the SYN, and on a listening socket the SYN-ACKs and (inherited) the accepted
// sockets. Errors (kInvalidArgument for a non-IP socket, kIo otherwise, with the
// errno, e.g. EPERM for a priority above 6 without CAP_NET_ADMIN) name the option.
// Fields already applied before an error stay applied.
Status ApplySocketMarking(int fd, const SocketMarking& marking);

// What the socket carries now (getsockopt of the same options): dscp from the TOS /
// traffic class byte, priority from SO_PRIORITY. For tests and diagnostics.
Result<SocketMarking> ReadSocketMarking(int fd);

// "dscp AF41 (34), so_priority 6", "unmarked", for logs and pause reasons.
std::string DescribeMarking(const SocketMarking& marking);

}  // namespace migratefs::net
