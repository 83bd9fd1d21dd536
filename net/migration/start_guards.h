// Checks Engine::Start makes before it opens or attaches anything: a start that would
// hurt the host is refused at once, with a clear error, instead of failing later.
#pragma once

#include <string>

#include "migratefs/status.h"

namespace migratefs::migration {

// Whether `target` (HOST:PORT of a start) names this daemon's own listener `listen`
// (HOST:PORT of -o listen=; "" = none): same port, and a host that is the listen host
// itself, a loopback address or "localhost", or -- when listening on every address --
// any numeric address of one of this host's interfaces. Names are not resolved (no
// DNS on the control path); a start to itself through a name or a NAT is caught by
// the target instead (instance id in OpenImage: target_is_self).
bool IsOwnAddress(const std::string& target, const std::string& listen);

// A new migration needs a few descriptors (image, O_DIRECT twin, socket, eventfds).
// Refuses (kResourceExhausted) when fewer than max(64, limit / 8) of RLIMIT_NOFILE
// would remain, so that the VMs' own opens through the mount never run out first.
Status CheckDescriptorRoom();

// Raises the RLIMIT_NOFILE soft limit to the hard limit (done once at daemon start);
// returns the soft limit now in force.
unsigned long RaiseDescriptorLimit();

}  // namespace migratefs::migration
