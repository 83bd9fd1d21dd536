// The kernel's id of a FUSE request, which libfuse 3.14 keeps to itself.
//
// Why we need it: after a worker dies, FUSE_NOTIFY_RESEND (kernel_protocol.h) makes
// the kernel send again every request the dead worker had read and not answered,
// under the same id with bit 63 (FUSE_UNIQUE_RESEND) set. A namespace op the dead
// worker had already carried out (mkdir, unlink, rename, ...) must not be carried
// out twice (resend_log.h), and only the id tells a resend from a new request.
#pragma once

#include <fuse_lowlevel.h>

#include <cstdint>

namespace migratefs::fs {

// Bit 63 of the id of a request the kernel sends a second time (<linux/fuse.h>,
// FUSE_UNIQUE_RESEND, Linux 6.9).
inline constexpr uint64_t kResendBit = 1ULL << 63;

// The request's `unique` as the kernel sent it, or 0 when it cannot be known.
//
// libfuse 3.14 has no accessor: the id sits in its private struct fuse_req right
// after the session pointer, and fuse_req_ctx() returns the address of the same
// struct's ctx member. The read is made only while that address is where the 3.14
// layout puts it (se, unique, ctr, lock, ctx); a libfuse with another layout gets 0
// and the callers fall back to treating every request as new.
uint64_t RequestUnique(fuse_req_t req);

}  // namespace migratefs::fs
