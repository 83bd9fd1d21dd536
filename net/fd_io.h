// Blocking-with-deadline frame I/O on a raw stream socket fd. Used for the handshake
// (before a connection is handed to Asio) and by tests that play a raw peer.
// Works whether or not the fd is O_NONBLOCK: every wait is a poll() bounded by the
// deadline, every call MSG_DONTWAIT.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>

#include "migratefs/status.h"
#include "net/peer/frame.h"

namespace migratefs::net {

using Deadline = std::chrono::steady_clock::time_point;

// Errors: kPeerUnreachable (deadline passed, peer closed, socket error).
Status WriteAllFd(int fd, const void* data, size_t len, Deadline deadline);
Status ReadAllFd(int fd, void* data, size_t len, Deadline deadline);

// Socket options for a peer connection: TCP_NODELAY (acks and small mirrored writes go
// out at once; large frames are written many per call anyway) and keepalive probing
// after 10 s idle every 5 s, 3 probes, plus TCP_USER_TIMEOUT 60 s: a peer behind a cut
// link is noticed in well under a minute, not after the kernel's 2 h default, so its
// images become free for a resumed connection. Socket buffers are left to the
// kernel's autotuning (net.ipv4.tcp_rmem/wmem), which grows past what SO_RCVBUF
// could set without raising net.core.rmem_max. Best effort: errors are ignored.
void TunePeerSocket(int fd);

// Reads one frame, validating the header before reading the payload and the checksum
// after. Errors: kPeerUnreachable (I/O), kTooLarge / kBadRequest (invalid frame).
Result<Frame> ReadFrameFd(int fd, Deadline deadline);

// The same, for a reader that wants fewer frames than wire.h allows (the handshake
// takes four small types only): `check` sees the decoded header before a byte of the
// payload is read or allocated, and its error is returned as is.
using FrameHeaderCheck = std::function<Status(const FrameHeader&)>;
Result<Frame> ReadFrameFd(int fd, Deadline deadline, const FrameHeaderCheck& check);

}  // namespace migratefs::net
