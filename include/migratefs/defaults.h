// Defaults shared by the daemon and the tools that talk to it, so that both sides agree
// without configuration.
#pragma once

namespace migratefs {

// Where `migratefs -o control=` listens when no path is given, and where `migratectl`
// connects when no --socket is given. /run is a tmpfs that only root can write; the
// control server creates the migratefs/ directory (mode 0700) when it is missing.
inline constexpr const char* kDefaultControlSocket = "/run/migratefs/control.sock";

}  // namespace migratefs
