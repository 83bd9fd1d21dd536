#include "tests/harness/throttled_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

namespace migratefs::testing {

namespace {
using Clock = std::chrono::steady_clock;

int ConnectLoopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}
}  // namespace

ThrottledProxy::ThrottledProxy(int target_port) : target_port_(target_port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::listen(listen_fd_, 16);
  socklen_t len = sizeof a;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

ThrottledProxy::~ThrottledProxy() {
  stop_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : pumps_) t.join();
  for (int fd : fds_) ::close(fd);
  ::close(listen_fd_);
}

void ThrottledProxy::CutAll() {
  std::lock_guard<std::mutex> lk(mu_);
  for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
}

void ThrottledProxy::AcceptLoop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    int in = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (in < 0) continue;
    int out = ConnectLoopback(target_port_);
    if (out < 0) {
      ::close(in);
      continue;
    }
    std::lock_guard<std::mutex> lk(mu_);
    fds_.push_back(in);
    fds_.push_back(out);
    pumps_.emplace_back([this, in, out] { Pump(in, out, true); });
    pumps_.emplace_back([this, in, out] { Pump(out, in, false); });
  }
}

void ThrottledProxy::Pump(int from, int to, bool throttled) {
  char buf[16 << 10];
  auto window_start = Clock::now();
  uint64_t window_bytes = 0;
  while (!stop_) {
    pollfd p{from, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    size_t want = sizeof buf;
    const uint64_t rate = throttled ? rate_.load() : 0;
    if (rate > 0) want = std::min<size_t>(want, std::max<uint64_t>(1, rate / 50));  // 20 ms of budget
    ssize_t n = ::recv(from, buf, want, 0);
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = ::send(to, buf + off, size_t(n - off), MSG_NOSIGNAL);
      if (w <= 0) goto done;
      off += w;
    }
    if (throttled) forwarded_ += uint64_t(n);
    if (rate > 0) {
      // Sleep until the bytes of this window fit the rate.
      window_bytes += uint64_t(n);
      const auto due = window_start + std::chrono::nanoseconds(window_bytes * 1'000'000'000ull / rate);
      if (due > Clock::now()) std::this_thread::sleep_until(due);
      if (Clock::now() - window_start > std::chrono::seconds(1)) {
        window_start = Clock::now();
        window_bytes = 0;
      }
    } else {
      window_start = Clock::now();
      window_bytes = 0;
    }
  }
done:
  ::shutdown(to, SHUT_WR);
}

}  // namespace migratefs::testing
