// The fixture of the peer_*_test.cc files: a PeerServer on loopback
// receiving into a temp dir, clients connecting to it, and ChildServer: a PeerServer in
// a child process, to freeze (SIGSTOP) and kill.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <gtest/gtest.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <memory>
#include <string>

#include "net/peer/peer_client.h"
#include "net/peer/peer_server.h"
#include "net/peer/peer_test_util.h"

namespace migratefs::net::testing {

inline constexpr uint32_t kBlock = 512 * 1024;
// What a source says of the image it sends: a target reopens an existing file only for
// an image of the same identity (receive_admission.h).
inline const ImageOrigin kOrigin{"0123456789abcdef0123456789abcdef", "", false};

class PeerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dirfd_ = ::open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(dirfd_, 0);
  }
  void TearDown() override {
    server_.reset();
    ::close(dirfd_);
  }

  void StartServer(const std::string& key = "sekrit-key", bool insecure = false) {
    PeerServerOptions o;
    o.listen = "127.0.0.1:0";
    o.key = key;
    o.insecure = insecure;
    o.src_dirfd = dirfd_;
    o.handshake_timeout = std::chrono::milliseconds(1000);
    auto s = PeerServer::Start(o, &observer_);
    ASSERT_TRUE(s.ok()) << s.error().message;
    server_ = std::move(s.value());
  }

  Result<std::unique_ptr<PeerClient>> Connect(const std::string& key = "sekrit-key",
                                              std::chrono::milliseconds io_timeout = std::chrono::seconds(10)) {
    PeerClientOptions o;
    o.target = "127.0.0.1:" + std::to_string(server_->port());
    o.key = key;
    o.io_timeout = io_timeout;
    return PeerClient::Connect(o);
  }

  // A client that holds SendPace::kCoalesced frames for `delay` or until `max_bytes`
  // (and SendPace::kAwaited ones behind `awaited_batch_after` unanswered, if not 0, for
  // `delay` too).
  std::unique_ptr<PeerClient> MustConnectCoalescing(std::chrono::microseconds delay, uint64_t max_bytes,
                                                    uint32_t awaited_batch_after = 0) {
    PeerClientOptions o;
    o.target = "127.0.0.1:" + std::to_string(server_->port());
    o.key = "sekrit-key";
    o.coalesce_delay = delay;
    o.coalesce_max_bytes = max_bytes;
    o.awaited_batch_after = awaited_batch_after;
    o.awaited_batch_wait = delay;
    auto c = PeerClient::Connect(o);
    EXPECT_TRUE(c.ok()) << c.error().code << ": " << c.error().message;
    return c.ok() ? std::move(c.value()) : nullptr;
  }

  std::unique_ptr<PeerClient> MustConnect() {
    auto c = Connect();
    EXPECT_TRUE(c.ok()) << c.error().code << ": " << c.error().message;
    return c.ok() ? std::move(c.value()) : nullptr;
  }

  std::string StateXattr(const std::string& name) {
    char buf[64];
    const ssize_t n = ::getxattr((dir_ / name).c_str(), "user.migratefs.state", buf, sizeof buf);
    return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
  }

  TempDir dir_;
  int dirfd_ = -1;
  RecordingObserver observer_;
  std::unique_ptr<PeerServer> server_;
};

// The target daemon runs in a child process so the test can freeze and kill it.
class ChildServer {
 public:
  ChildServer(const std::string& dir, const std::string& key) {
    int p[2];
    EXPECT_EQ(::pipe(p), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(p[0]);
      const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
      PeerServerOptions o;
      o.listen = "127.0.0.1:0";
      o.key = key;
      o.src_dirfd = dfd;
      auto s = PeerServer::Start(o, nullptr);
      uint16_t port = s.ok() ? s.value()->port() : 0;
      (void)!::write(p[1], &port, sizeof port);
      while (true) ::pause();
    }
    ::close(p[1]);
    EXPECT_EQ(::read(p[0], &port_, sizeof port_), static_cast<ssize_t>(sizeof port_));
    ::close(p[0]);
  }
  ~ChildServer() { Kill(); }
  void Signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  // SIGSTOP, and returns once the child has stopped (a signal is delivered later).
  void Freeze() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGSTOP);
    int st = 0;
    EXPECT_EQ(::waitpid(pid_, &st, WUNTRACED), pid_);
    EXPECT_TRUE(WIFSTOPPED(st));
  }
  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  uint16_t port() const { return port_; }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

// Options of a client of `child` (whose key is "k").
inline PeerClientOptions ChildClientOptions(const ChildServer& child) {
  PeerClientOptions o;
  o.target = "127.0.0.1:" + std::to_string(child.port());
  o.key = "k";
  return o;
}


}  // namespace migratefs::net::testing
