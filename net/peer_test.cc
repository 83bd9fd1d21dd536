// Client <-> server on loopback into a temp dir.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "net/peer_client.h"
#include "net/peer_server.h"
#include "net/peer_test_util.h"

namespace migratefs::net {
namespace {

using namespace migratefs::net::testing;  // NOLINT

constexpr uint32_t kBlock = 512 * 1024;

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

TEST_F(PeerTest, OpenDataFinishRoundTrip) {
  StartServer();
  auto c = MustConnect();
  ASSERT_TRUE(c);
  auto img = c->OpenImage("vm1.img", 4 * kBlock, kBlock, false);
  ASSERT_TRUE(img.ok()) << img.error().message;
  EXPECT_FALSE(img.value().existed);
  EXPECT_EQ(StateXattr("vm1.img"), "receiving");
  const std::string a = Pattern(kBlock, 1), b = Pattern(kBlock, 2);
  ASSERT_TRUE(SendDataSync(*c, img.value().handle, 0, a).ok());
  ASSERT_TRUE(SendDataSync(*c, img.value().handle, 2 * kBlock, b).ok());
  ASSERT_TRUE(SendSyncSync(*c, img.value().handle).ok());
  Status fin = c->FinishImage(img.value().handle);
  ASSERT_TRUE(fin.ok()) << fin.error().message;
  std::string expect = a + std::string(kBlock, '\0') + b + std::string(kBlock, '\0');
  EXPECT_EQ(ReadFileBytes(dir_ / "vm1.img"), expect);
  EXPECT_EQ(StateXattr("vm1.img"), "");
  auto ev = observer_.events();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].what, "receiving");
  EXPECT_EQ(ev[1].what, "ended");
  EXPECT_TRUE(ev[1].complete);
  EXPECT_EQ(c->inflight_bytes(), 0u);
  EXPECT_TRUE(c->alive());
}

TEST_F(PeerTest, WrongKeyIsRefused) {
  StartServer("right-key");
  auto c = Connect("wrong-key");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, errc::kAuthFailed) << c.error().message;
}

}  // namespace
}  // namespace migratefs::net
