// Defaults shared by the daemon and the tools that talk to it, so that both sides agree
// without configuration.
#pragma once

namespace migratefs {

// Where `migratefs -o control=` listens when no path is given, and where `migratectl`
// connects when no --socket is given. /run is a tmpfs that only root can write; the
// control server creates the migratefs/ directory (mode 0700) when it is missing.
inline constexpr const char* kDefaultControlSocket = "/run/migratefs/control.sock";

// Where the daemon keeps what must outlive it but not the host (`-o state_dir=`): the
// maps of copies in postcopy (net/peer/postcopy_map.h). A tmpfs on purpose: such a
// map is exact only as long as the page cache it describes.
inline constexpr const char* kDefaultStateDir = "/run/migratefs";

}  // namespace migratefs
