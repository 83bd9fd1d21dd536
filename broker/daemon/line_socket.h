// Blocking JSON-lines sockets with deadlines: the transport under the broker's control
// client (UNIX socket to the local migratefs), its peer messages (TCP) and its own
// listeners. Every call that waits takes a timeout, so a vanished peer costs at most
// that long and never hangs a caller.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "migratefs/status.h"

namespace migratefs::broker {

using Millis = std::chrono::milliseconds;

// An owned file descriptor (closed on destruction; movable, not copyable).
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  ~Fd();
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release();
  void reset();

 private:
  int fd_ = -1;
};

// "HOST:PORT" with an IPv4 address or a name and a decimal port 1..65535.
// invalid_argument otherwise (the message quotes the text).
struct Endpoint {
  std::string host;
  int port = 0;
};
Result<Endpoint> ParseEndpoint(const std::string& text);

// Connects within `timeout`. peer_unreachable on refusal, timeout or a missing socket.
Result<Fd> ConnectUnix(const std::string& path, Millis timeout);
Result<Fd> ConnectTcp(const std::string& host_port, Millis timeout);

// Listening sockets. The UNIX one replaces a stale socket file and is made mode 0600.
Result<Fd> ListenUnix(const std::string& path);
Result<Fd> ListenTcp(const std::string& host_port);
// The port a listening TCP socket is bound to (for tests that bind port 0).
int BoundPort(int fd);

// Buffered line reader/writer over one connected socket.
class LineConn {
 public:
  explicit LineConn(Fd fd) : fd_(std::move(fd)) {}
  // Writes `line` plus '\n' within `timeout`. io_error / peer_unreachable on failure.
  Status WriteLine(const std::string& line, Millis timeout);
  // The next line without its '\n' (and '\r'). nullopt at a clean EOF; an error on
  // timeout, a line over `max_bytes`, or a socket error.
  Result<std::optional<std::string>> ReadLine(Millis timeout, size_t max_bytes = 1 << 20);
  int fd() const { return fd_.get(); }

 private:
  Fd fd_;
  std::string buffer_;
};

// One request line out, one answer line back, on a fresh connection (UNIX path when
// `address` starts with '/', TCP HOST:PORT otherwise), all within `timeout`.
Result<std::string> RoundTrip(const std::string& address, const std::string& line,
                              Millis timeout);

}  // namespace migratefs::broker
