// Options of the migratefs daemon (`-o name=value,...`, also from /etc/fstab).
// Parsed by fs/options.cc; read by every part of the daemon.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "migratefs/defaults.h"

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
  // state_dir=PATH: what must outlive the daemon but not the host (maps of copies in
  // postcopy); "" = keep nothing. Default kDefaultStateDir (defaults.h).
  std::string state_dir = kDefaultStateDir;
  uint64_t block_size = 512 * 1024;  // block_size=BYTES: dirty-tracking granularity (power of 2, 4 KiB..64 MiB)
  // Priority marking of peer connections (net/socket_marking.h): the default of every
  // migration this daemon sends (a start may override it) and of the peer sockets it
  // accepts. Unset = the socket is left as the kernel made it.
  std::optional<uint8_t> dscp;         // dscp=NAME|0..63 (CS0..CS7, AF11..AF43, EF, DF, LE, VA)
  std::optional<uint32_t> so_priority;  // so_priority=N (0..6 unprivileged; an htb classid 0xMMMMmmmm works too)
  // mirror_coalesce_us=N: how long an asynchronous mirror's write may wait on the source
  // for others to share its send (net::SendPace::kCoalesced); 0 = each is sent at once.
  unsigned mirror_coalesce_us = 1000;
  // senders=N: blocks each outgoing migration reads and has queued at once in phases
  // 1-2 (one thread each, each with one O_DIRECT read of a block in flight).
  unsigned senders = 8;
  // mirror_batch_after=N: a synchronous mirror's write queued while N or more are
  // unanswered waits for their replies and leaves with the others held meanwhile, in
  // one send (net::PeerClientOptions::awaited_batch_after); 0 = each at once.
  // 4: bench/mirror/RESULTS.md (at qd16 the source CPU per mirrored write +17 -> +8..13 us,
  // the target's 26 -> 11..12 us; qd1 unchanged).
  unsigned mirror_batch_after = 4;
  // mirror_batch_wait_us=N: the longest such a write waits when no reply comes first.
  unsigned mirror_batch_wait_us = 200;

  // FUSE tuning.
  bool allow_other = false;
  bool writeback_cache = true;   // writeback / nowriteback
  // write_behind / nowrite_behind: after a large buffered WRITE the daemon starts the
  // backing file's write-out of that range at once (sync_file_range, fs/write_behind.h),
  // so an fsync finds most of it on the disk already.
  bool write_behind = true;
  // xattr / noxattr: with noxattr every extended-attribute call gets ENOSYS, which
  // the kernel remembers per call (EOPNOTSUPP to callers from then on), so it stops
  // asking for security.capability before each write(2) (fs/op_xattr.cc).
  bool xattr = true;
  unsigned max_threads = 32;
  unsigned max_background = 64;
};

}  // namespace migratefs
