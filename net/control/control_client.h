// A blocking client of the control socket: one connection, JSON lines out, lines in.
// Used by migratectl and by the tests; the broker may use it too. Not thread-safe.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "migratefs/status.h"

namespace migratefs::control {

class ControlClient {
 public:
  // Connection-level failures carry this code, so callers can tell "could not talk to
  // the daemon" from an error the daemon answered.
  static constexpr const char* kConnectFailed = "connect_failed";  // no daemon at path
  static constexpr const char* kDisconnected = "disconnected";     // closed mid-request
  static constexpr const char* kTimedOut = "timed_out";            // no answer in time

  using Timeout = std::chrono::milliseconds;
  static constexpr Timeout kForever = Timeout::max();

  static Result<std::unique_ptr<ControlClient>> Connect(const std::string& path);
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Sends `request` as one line and returns the next line parsed as JSON (the answer;
  // {"ok":false,...} answers are values here, not errors). Errors: kDisconnected,
  // kTimedOut, or bad_request when the answer is not JSON.
  Result<nlohmann::json> Call(const nlohmann::json& request, Timeout timeout);

  // Lower level, for streams and for tests that misbehave on purpose.
  Status Send(std::string_view bytes);  // all of it, no newline added
  Result<std::string> ReadLine(Timeout timeout);  // without the '\n'
  // True if the server closes the connection within `timeout`; lines are skipped.
  bool WaitForClose(Timeout timeout);

  int fd() const { return fd_; }

 private:
  explicit ControlClient(int fd) : fd_(fd) {}
  // Waits for readable data until `deadline`; appends it to pending_. 0 = got data,
  // else the error.
  Status Fill(std::chrono::steady_clock::time_point deadline);

  int fd_;
  std::string pending_;
};

}  // namespace migratefs::control
