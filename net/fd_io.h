// Blocking-with-deadline frame I/O on a raw stream socket fd. Used for the handshake
// (before a connection is handed to Asio) and by tests that play a raw peer.
// Works whether or not the fd is O_NONBLOCK: every wait is a poll() bounded by the
// deadline, every call MSG_DONTWAIT.
#pragma once

#include <chrono>
#include <cstddef>

#include "migratefs/status.h"
#include "net/frame.h"

namespace migratefs::net {

using Deadline = std::chrono::steady_clock::time_point;

// Errors: kPeerUnreachable (deadline passed, peer closed, socket error).
Status WriteAllFd(int fd, const void* data, size_t len, Deadline deadline);
Status ReadAllFd(int fd, void* data, size_t len, Deadline deadline);

// Reads one frame, validating the header before reading the payload and the checksum
// after. Errors: kPeerUnreachable (I/O), kTooLarge / kBadRequest (invalid frame).
Result<Frame> ReadFrameFd(int fd, Deadline deadline);

}  // namespace migratefs::net
