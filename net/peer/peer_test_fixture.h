// The fixture of peer_test.cc and peer_stream_test.cc: a PeerServer on loopback
// receiving into a temp dir, and clients connecting to it.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
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

}  // namespace migratefs::net::testing
