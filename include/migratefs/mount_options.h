// Options of the migratefs daemon (`-o name=value,...`, also from /etc/fstab).
// Parsed by fs/options.cc; read by every part of the daemon.
#pragma once

#include <cstdint>
#include <string>

namespace migratefs {

struct MountOptions {
  std::string source;      // SRC: the directory of VM images (absolute after parsing)
  std::string mountpoint;  // MNT: may equal source
  bool foreground = false;  // -f
  bool debug = false;       // -d (implies foreground)

  // Migration service (see DESIGN.md "Mount options").
  std::string control;      // control=PATH: UNIX socket for JSON-lines requests ("" = none)
  std::string listen;       // listen=HOST:PORT: accept peers ("" = do not receive)
  std::string keyfile;      // keyfile=PATH: pre-shared key peers must prove
  bool insecure = false;    // insecure: allow listen= without a keyfile
  std::string metrics;      // metrics=HOST:PORT: read-only Prometheus endpoint ("" = none)
  uint64_t block_size = 512 * 1024;  // block_size=BYTES: dirty-tracking granularity (power of 2, 4 KiB..64 MiB)

  // FUSE tuning.
  bool allow_other = false;
  bool writeback_cache = true;   // writeback / nowriteback
  unsigned max_threads = 32;
  unsigned max_background = 64;
};

}  // namespace migratefs
