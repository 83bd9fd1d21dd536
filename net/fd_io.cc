#include "net/fd_io.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace migratefs::net {

namespace {
// Waits until fd is ready for `events` or the deadline passes.
Status WaitFd(int fd, short events, Deadline deadline, const char* what) {
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                             std::chrono::steady_clock::now());
    if (left.count() <= 0) return MakeError(errc::kPeerUnreachable, std::string("timed out while ") + what);
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (r > 0) return OkStatus();
    if (r < 0 && errno != EINTR) {
      return MakeError(errc::kPeerUnreachable, std::string("poll while ") + what + ": " + std::strerror(errno));
    }
  }
}
}  // namespace

void TunePeerSocket(int fd) {
  const int one = 1, idle = 10, intvl = 5, cnt = 3;
  const unsigned user_timeout_ms = 60000;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
}

Status WriteAllFd(int fd, const void* data, size_t len, Deadline deadline) {
  const auto* p = static_cast<const char*>(data);
  while (len > 0) {
    const ssize_t n = ::send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      len -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      Status st = WaitFd(fd, POLLOUT, deadline, "sending");
      if (!st.ok()) return st;
      continue;
    }
    return MakeError(errc::kPeerUnreachable, std::string("send: ") + std::strerror(errno));
  }
  return OkStatus();
}

Status ReadAllFd(int fd, void* data, size_t len, Deadline deadline) {
  auto* p = static_cast<char*>(data);
  while (len > 0) {
    const ssize_t n = ::recv(fd, p, len, MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      len -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return MakeError(errc::kPeerUnreachable, "peer closed the connection");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      Status st = WaitFd(fd, POLLIN, deadline, "receiving");
      if (!st.ok()) return st;
      continue;
    }
    return MakeError(errc::kPeerUnreachable, std::string("recv: ") + std::strerror(errno));
  }
  return OkStatus();
}

Result<Frame> ReadFrameFd(int fd, Deadline deadline) { return ReadFrameFd(fd, deadline, nullptr); }

Result<Frame> ReadFrameFd(int fd, Deadline deadline, const FrameHeaderCheck& check) {
  uint8_t raw[wire::kHeaderSize];
  Status st = ReadAllFd(fd, raw, sizeof raw, deadline);
  if (!st.ok()) return st.error();
  auto h = DecodeHeader(raw);  // validated before anything is allocated
  if (!h.ok()) return h.error();
  if (check) {
    st = check(h.value());
    if (!st.ok()) return st.error();
  }
  Frame f;
  f.header = h.value();
  f.payload.resize(f.header.payload_len);
  st = ReadAllFd(fd, f.payload.data(), f.payload.size(), deadline);
  if (!st.ok()) return st.error();
  st = VerifyChecksum(raw, f.header, f.payload.data());
  if (!st.ok()) return st.error();
  return f;
}

}  // namespace migratefs::net
