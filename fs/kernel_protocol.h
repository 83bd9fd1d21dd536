// The few raw /dev/fuse exchanges libfuse 3.14 has no API for, all about handing a
// live connection to a new worker (supervisor.h). Kept apart from the libfuse
// headers: this file speaks <linux/fuse.h> directly.
#pragma once

#include <cstdint>
#include <vector>

namespace migratefs::fs {

// Reads the kernel's first request on a freshly mounted connection, which is
// FUSE_INIT, into *out. Returns 0, or an errno (EPROTO: the first request was not
// INIT).
int ReadInitRequest(int fuse_fd, std::vector<uint8_t>* out);

// A copy of a saved INIT request that a new libfuse session can process to reach the
// post-INIT state: its unique id is replaced by one the kernel never issued, so the
// kernel answers the session's reply with ENOENT (which libfuse ignores as "request
// interrupted") and nothing on the connection changes.
std::vector<uint8_t> ReplayableInit(const uint8_t* saved, uint32_t len);

// FUSE_NOTIFY_RESEND (Linux 6.9): the kernel puts every request that was read from
// this connection and not answered back on its pending queue, so a new worker sees
// what a dead one had taken. Returns 0 or an errno (EINVAL on kernels without it).
int NotifyResend(int fuse_fd);

}  // namespace migratefs::fs
