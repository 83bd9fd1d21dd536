// The few raw /dev/fuse exchanges libfuse 3.14 has no API for: handing a live
// connection to a new worker (supervisor.h), and INIT flags libfuse does not know
// (init_reply.h). Kept apart from the libfuse headers: this file speaks
// <linux/fuse.h> directly.
#pragma once

#include <sys/uio.h>

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

// FUSE_HANDLE_KILLPRIV_V2 (protocol 7.33, Linux 5.11; setid.h says what it asks of
// the server). libfuse 3.14 neither requests nor knows it.
inline constexpr uint32_t kInitHandleKillprivV2 = 1u << 28;

// The largest READ the daemon asks for, in pages (init_reply.h): 1 MiB, libfuse's
// FUSE_MAX_MAX_PAGES and the kernel's default limit (fuse_max_pages_limit).
inline constexpr uint16_t kReadPages = 256;

// An INIT request's id and the (low 32) flags the kernel offers; zeros if it is
// too short.
struct InitRequestInfo {
  uint64_t unique = 0;
  uint32_t flags = 0;
};
InitRequestInfo ParseInitRequest(const std::vector<uint8_t>& init);

// What the daemon changes in libfuse's INIT reply.
struct InitReplyAmendment {
  uint32_t flags = 0;      // added to the reply's flags
  uint16_t max_pages = 0;  // replaces the reply's max_pages when it sets FUSE_MAX_PAGES (0: kept)
};

// If iov/count is the successful reply to request `unique` and carries a
// fuse_init_out, points its argument at a copy in *storage with `amend` applied, and
// returns true. Anything else is left alone (false).
bool AmendInitReplyMessage(iovec* iov, int count, uint64_t unique, const InitReplyAmendment& amend,
                           std::vector<uint8_t>* storage);

}  // namespace migratefs::fs
