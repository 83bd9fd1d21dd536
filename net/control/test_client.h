// A blocking line client of the control socket, for tests. Not for production use: it
// keeps no state beyond a read buffer and fails by returning nullopt / false.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace migratefs::control {

class TestClient {
 public:
  // Connects to `path`; check connected().
  explicit TestClient(const std::string& path);
  ~TestClient();
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  // Sends all of `bytes` (no newline added). False if the server closed the connection.
  bool Send(std::string_view bytes);
  // The next line without its '\n'; nullopt on EOF, error or timeout.
  std::optional<std::string> ReadLine(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // True if the server closes the connection within `timeout` (pending lines are skipped).
  bool WaitForClose(std::chrono::milliseconds timeout);
  // Sends `request` as one line and parses the answer line; null json on failure.
  nlohmann::json Call(const nlohmann::json& request);
  void Close();

 private:
  int fd_ = -1;
  std::string pending_;
};

}  // namespace migratefs::control
