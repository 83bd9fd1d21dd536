#include "net/control/control_client.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace migratefs::control {

using Clock = std::chrono::steady_clock;

namespace {

Clock::time_point DeadlineAfter(ControlClient::Timeout timeout) {
  if (timeout == ControlClient::kForever) return Clock::time_point::max();
  return Clock::now() + timeout;
}

}  // namespace

Result<std::unique_ptr<ControlClient>> ControlClient::Connect(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return MakeError(kConnectFailed, "socket path too long or empty: " + path);
  }
  memcpy(address.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return MakeError(kConnectFailed, std::string("socket: ") + strerror(errno));
  if (connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    int err = errno;
    close(fd);
    return MakeError(kConnectFailed, "cannot connect to " + path + ": " + strerror(err));
  }
  return std::unique_ptr<ControlClient>(new ControlClient(fd));
}

ControlClient::~ControlClient() { close(fd_); }

Status ControlClient::Send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return MakeError(kDisconnected, std::string("the daemon closed the connection: ") +
                                          strerror(n < 0 ? errno : EPIPE));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return OkStatus();
}

Status ControlClient::Fill(Clock::time_point deadline) {
  for (;;) {
    int wait_ms = -1;
    if (deadline != Clock::time_point::max()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return MakeError(kTimedOut, "no answer from the daemon in time");
      wait_ms = static_cast<int>(std::min<int64_t>(left.count(), 1 << 30));
    }
    pollfd p{fd_, POLLIN, 0};
    int ready = poll(&p, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return MakeError(kDisconnected, std::string("poll: ") + strerror(errno));
    if (ready == 0) continue;  // re-check the deadline
    char chunk[65536];
    ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return MakeError(kDisconnected, "the daemon closed the connection");
    if (n < 0) return MakeError(kDisconnected, std::string("recv: ") + strerror(errno));
    pending_.append(chunk, static_cast<size_t>(n));
    return OkStatus();
  }
}

Result<std::string> ControlClient::ReadLine(Timeout timeout) {
  Clock::time_point deadline = DeadlineAfter(timeout);
  for (;;) {
    size_t newline = pending_.find('\n');
    if (newline != std::string::npos) {
      std::string line = pending_.substr(0, newline);
      pending_.erase(0, newline + 1);
      return line;
    }
    if (Status filled = Fill(deadline); !filled) return filled.error();
  }
}

bool ControlClient::WaitForClose(Timeout timeout) {
  Clock::time_point deadline = DeadlineAfter(timeout);
  for (;;) {
    pending_.clear();
    Status filled = Fill(deadline);
    if (!filled) return filled.error().code == kDisconnected;
  }
}

Result<nlohmann::json> ControlClient::Call(const nlohmann::json& request, Timeout timeout) {
  std::string line_out;
  try {
    line_out = request.dump() + "\n";
  } catch (const nlohmann::json::type_error& e) {  // a string that is not UTF-8
    return MakeError(errc::kBadRequest, std::string("request not sendable: ") + e.what());
  }
  if (Status sent = Send(line_out); !sent) return sent.error();
  Result<std::string> line = ReadLine(timeout);
  if (!line) return line.error();
  nlohmann::json answer = nlohmann::json::parse(line.value(), nullptr, false);
  if (answer.is_discarded()) {
    return MakeError(errc::kBadRequest, "the daemon's answer is not JSON: " + line.value());
  }
  return answer;
}

}  // namespace migratefs::control
