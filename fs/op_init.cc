#include "fs/device_io.h"
#include "fs/fs.h"
#include "fs/ops.h"

#include <spdlog/spdlog.h>

namespace migratefs::fs {

void OpInit(void* userdata, fuse_conn_info* conn) {
  Fs& fs = *static_cast<Fs*>(userdata);
  const MountOptions& o = fs.options();

  // Splicing replies (SPLICE_WRITE/MOVE) measured no faster on small machines
  // (research/fuse-perf.md) and costs a pipe per thread: off. SPLICE_READ hands us
  // large WRITE payloads in a pipe; op_write.cc reads them into memory when a hook
  // needs the bytes (or O_DIRECT needs an aligned copy) and splices them otherwise.
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  if (fs.splice_read() && (conn->capable & FUSE_CAP_SPLICE_READ)) conn->want |= FUSE_CAP_SPLICE_READ;

  // Set-id bits (setid.h): libfuse asks for HANDLE_KILLPRIV by default, under which
  // the kernel clears nothing and sends nothing when a buffered write, a truncate or
  // an fallocate by an unprivileged caller should drop them, and the daemon never
  // learns of it. Without it the kernel sends the mode change itself; with
  // HANDLE_KILLPRIV_V2 (added to the reply by init_reply.h) it tells the daemon.
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;

  // libfuse 3.14's receive buffer holds 256 pages: 1 MiB is the largest WRITE. With
  // SPLICE_READ it is one page less where pipes may not exceed 1 MiB, or libfuse
  // would never use its pipe (device_io.h: reading into memory is both a copy more
  // and the window in which a killed worker loses requests).
  conn->max_write = 1 << 20;
  if (conn->want & FUSE_CAP_SPLICE_READ) {
    const size_t spliced = SplicedMaxWrite();
    if (spliced >= 64 * 1024) {
      conn->max_write = static_cast<unsigned>(spliced);
    } else {
      spdlog::warn("FUSE: pipes of this process hold {} bytes; WRITEs are read into memory", spliced);
      conn->want &= ~FUSE_CAP_SPLICE_READ;
    }
  }

  // The writeback cache lets the kernel absorb small buffered writes and send them
  // as large WRITEs later; it is the single biggest buffered-write win. The kernel
  // then also does read-modify-write on pages of write-only opens (see op_open.cc).
  if (o.writeback_cache && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
    fs.set_writeback(true);
  } else {
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    fs.set_writeback(false);
  }

  // Async requests in flight (readahead, async direct I/O, writeback). The kernel's
  // default of 12 throttles qd16 workloads.
  conn->max_background = o.max_background;
  conn->congestion_threshold = o.max_background * 3 / 4;
  if (conn->congestion_threshold == 0) conn->congestion_threshold = 1;

  conn->time_gran = 1;
  fs.set_initialized();
  spdlog::debug("FUSE init: proto {}.{}, writeback_cache={}, max_write={}, max_background={}", conn->proto_major,
                conn->proto_minor, fs.writeback(), conn->max_write, conn->max_background);
}

void OpDestroy(void* userdata) {}

}  // namespace migratefs::fs
