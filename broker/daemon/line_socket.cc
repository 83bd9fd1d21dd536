#include "broker/daemon/line_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>

namespace migratefs::broker {

namespace {

using Clock = std::chrono::steady_clock;

Error Unreachable(const std::string& what, int err) {
  return MakeError(errc::kPeerUnreachable, what + ": " + std::strerror(err));
}

// Milliseconds left until `deadline`, at least 0.
int LeftMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

// Waits for `events` on fd until the deadline. false on timeout.
bool WaitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, LeftMs(deadline));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return false;
  }
}

Result<Fd> ConnectAddr(const sockaddr* addr, socklen_t len, int family, const std::string& what,
                       Millis timeout) {
  Fd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Unreachable(what, errno);
  auto deadline = Clock::now() + timeout;
  if (::connect(fd.get(), addr, len) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) return Unreachable(what, errno);
    if (!WaitFor(fd.get(), POLLOUT, deadline)) return Unreachable(what, ETIMEDOUT);
    int err = 0;
    socklen_t err_len = sizeof(err);
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &err_len);
    if (err != 0) return Unreachable(what, err);
  }
  return fd;
}

Result<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return MakeError(errc::kInvalidArgument, "socket path \"" + path + "\" is empty or too long");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

Result<sockaddr_in> TcpAddress(const std::string& host_port) {
  auto endpoint = ParseEndpoint(host_port);
  if (!endpoint) return endpoint.error();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(endpoint.value().port));
  if (::inet_pton(AF_INET, endpoint.value().host.c_str(), &addr.sin_addr) == 1) return addr;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(endpoint.value().host.c_str(), nullptr, &hints, &found) != 0 || !found) {
    return MakeError(errc::kPeerUnreachable, "cannot resolve \"" + endpoint.value().host + "\"");
  }
  addr.sin_addr = reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr;
  ::freeaddrinfo(found);
  return addr;
}

}  // namespace

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

Fd::~Fd() { reset(); }

int Fd::release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Result<Endpoint> ParseEndpoint(const std::string& text) {
  auto colon = text.rfind(':');
  auto bad = [&] {
    return MakeError(errc::kInvalidArgument, "\"" + text + "\" is not HOST:PORT");
  };
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return bad();
  Endpoint endpoint{text.substr(0, colon), 0};
  for (char c : text.substr(colon + 1)) {
    if (c < '0' || c > '9') return bad();
    endpoint.port = endpoint.port * 10 + (c - '0');
    if (endpoint.port > 65535) return bad();
  }
  for (char c : endpoint.host) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') {
      return bad();
    }
  }
  return endpoint;
}

Result<Fd> ConnectUnix(const std::string& path, Millis timeout) {
  auto addr = UnixAddress(path);
  if (!addr) return addr.error();
  return ConnectAddr(reinterpret_cast<const sockaddr*>(&addr.value()), sizeof(sockaddr_un),
                     AF_UNIX, "connect " + path, timeout);
}

Result<Fd> ConnectTcp(const std::string& host_port, Millis timeout) {
  auto addr = TcpAddress(host_port);
  if (!addr) return addr.error();
  return ConnectAddr(reinterpret_cast<const sockaddr*>(&addr.value()), sizeof(sockaddr_in),
                     AF_INET, "connect " + host_port, timeout);
}

Result<Fd> ListenUnix(const std::string& path) {
  auto addr = UnixAddress(path);
  if (!addr) return addr.error();
  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return MakeError(errc::kBusy, path + " exists and is not a socket");
    }
    if (ConnectUnix(path, Millis(200))) {
      return MakeError(errc::kBusy, "a live server already listens on " + path);
    }
    ::unlink(path.c_str());
  }
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return MakeError(errc::kIo, std::string("socket: ") + std::strerror(errno));
  mode_t old = ::umask(077);
  int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr.value()), sizeof(sockaddr_un));
  int err = errno;
  ::umask(old);
  if (rc != 0) return MakeError(errc::kIo, "bind " + path + ": " + std::strerror(err));
  ::chmod(path.c_str(), 0600);
  if (::listen(fd.get(), 64) != 0) {
    return MakeError(errc::kIo, "listen " + path + ": " + std::strerror(errno));
  }
  return fd;
}

Result<Fd> ListenTcp(const std::string& host_port) {
  auto addr = TcpAddress(host_port);
  if (!addr) return addr.error();
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return MakeError(errc::kIo, std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr.value()), sizeof(sockaddr_in)) !=
          0 ||
      ::listen(fd.get(), 64) != 0) {
    return MakeError(errc::kIo, "listen on " + host_port + ": " + std::strerror(errno));
  }
  return fd;
}

int BoundPort(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  return ntohs(addr.sin_port);
}

Status LineConn::WriteLine(const std::string& line, Millis timeout) {
  std::string out = line + "\n";
  auto deadline = Clock::now() + timeout;
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::send(fd_.get(), out.data() + done, out.size() - done,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!WaitFor(fd_.get(), POLLOUT, deadline)) return Unreachable("write", ETIMEDOUT);
      continue;
    }
    return Unreachable("write", errno);
  }
  return OkStatus();
}

Result<std::optional<std::string>> LineConn::ReadLine(Millis timeout, size_t max_bytes) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return std::optional<std::string>(std::move(line));
    }
    if (buffer_.size() > max_bytes) {
      return MakeError(errc::kTooLarge, "line longer than " + std::to_string(max_bytes));
    }
    if (!WaitFor(fd_.get(), POLLIN, deadline)) return Unreachable("read", ETIMEDOUT);
    char chunk[4096];
    ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n == 0) {
      if (buffer_.empty()) return std::optional<std::string>();
      return Unreachable("read", ECONNRESET);
    }
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return Unreachable("read", errno);
    }
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

Result<std::string> RoundTrip(const std::string& address, const std::string& line,
                              Millis timeout) {
  auto deadline = Clock::now() + timeout;
  auto fd = address.starts_with("/") ? ConnectUnix(address, timeout) : ConnectTcp(address, timeout);
  if (!fd) return fd.error();
  LineConn conn(std::move(fd.value()));
  if (auto s = conn.WriteLine(line, Millis(LeftMs(deadline))); !s) return s.error();
  auto answer = conn.ReadLine(Millis(LeftMs(deadline)));
  if (!answer) return answer.error();
  if (!answer.value()) return MakeError(errc::kPeerUnreachable, address + " closed without answer");
  return std::move(*answer.value());
}

}  // namespace migratefs::broker
