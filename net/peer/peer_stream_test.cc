// Client <-> server on loopback: the stream under load and failure: the flow-control
// window, peers that die or freeze mid-stream, takeovers, concurrent senders, a full
// target disk. peer_send_order_test.cc has the send path's order and batching.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <thread>

#include "net/fd_io.h"
#include "net/peer/frame.h"
#include "net/peer/handshake.h"
#include "net/peer/peer_client.h"
#include "net/peer/peer_server.h"
#include "net/peer/peer_test_fixture.h"
#include "net/peer/peer_test_util.h"
#include "net/peer/receive_session.h"

namespace migratefs::net {
namespace {

using namespace migratefs::net::testing;  // NOLINT

TEST_F(PeerTest, FlowControlWindowIsRespected) {
  StartServer();
  PeerClientOptions o;
  o.target = "127.0.0.1:" + std::to_string(server_->port());
  o.key = "sekrit-key";
  o.max_inflight_bytes = 4 * kBlock;
  auto cr = PeerClient::Connect(o);
  ASSERT_TRUE(cr.ok());
  auto& c = cr.value();
  auto img = c->OpenImage("fc.img", 128ull * kBlock, kBlock, false);
  ASSERT_TRUE(img.ok());
  const std::string data = Pattern(kBlock, 5);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> max_seen{0};
  std::thread monitor([&] {
    while (!stop) {
      const uint64_t v = c->inflight_bytes();
      if (v > max_seen) max_seen = v;
    }
  });
  std::atomic<int> acks{0};
  for (int i = 0; i < 128; ++i) {
    ASSERT_TRUE(c->WaitForWindow(kBlock, std::chrono::seconds(10)));
    c->SendData(img.value().handle, static_cast<uint64_t>(i) * kBlock, data.data(), kBlock,
                [&](const Status& s) { if (s.ok()) ++acks; });
    const uint64_t now = c->inflight_bytes();
    EXPECT_LE(now, o.max_inflight_bytes);
    if (now > max_seen) max_seen = now;  // the monitor may be starved on a busy machine
  }
  ASSERT_TRUE(c->FinishImage(img.value().handle).ok());
  stop = true;
  monitor.join();
  EXPECT_EQ(acks.load(), 128);
  EXPECT_LE(max_seen.load(), o.max_inflight_bytes);
  EXPECT_GT(max_seen.load(), 0u);
}

// Sends until stopped; returns per-ack results.
struct Blaster {
  std::mutex mu;
  std::vector<Status> results;
  std::atomic<int> sent{0};
  void Run(PeerClient& c, uint32_t h, std::atomic<bool>& stop) {
    const std::string data = Pattern(kBlock, 9);
    for (uint64_t i = 0; !stop && c.alive(); ++i) {
      if (!c.WaitForWindow(kBlock, std::chrono::milliseconds(50))) continue;
      ++sent;
      c.SendData(h, (i % 64) * kBlock, data.data(), kBlock, [this](const Status& s) {
        std::lock_guard<std::mutex> lk(mu);
        results.push_back(s);
      });
    }
  }
};

TEST_F(PeerTest, ServerKilledMidStreamFailsPendingAcks) {
  ChildServer child(dir_.path(), "k");
  ASSERT_NE(child.port(), 0);
  PeerClientOptions o = ChildClientOptions(child);
  o.max_inflight_bytes = 32ull << 20;
  auto cr = PeerClient::Connect(o);
  ASSERT_TRUE(cr.ok()) << cr.error().message;
  auto& c = cr.value();
  auto img = c->OpenImage("kill.img", 64ull * kBlock, kBlock, false);
  ASSERT_TRUE(img.ok());
  std::atomic<bool> stop{false};
  Blaster b;
  std::thread t([&] { b.Run(*c, img.value().handle, stop); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  child.Signal(SIGSTOP);  // freeze it with frames in flight, then kill it
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  child.Kill();
  for (int i = 0; i < 100 && c->alive(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  stop = true;
  t.join();
  EXPECT_FALSE(c->alive());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::lock_guard<std::mutex> lk(b.mu);
  EXPECT_EQ(static_cast<int>(b.results.size()), b.sent.load()) << "every AckFn is called exactly once";
  int unreachable = 0;
  for (const Status& s : b.results) {
    if (!s.ok()) {
      EXPECT_EQ(s.error().code, errc::kPeerUnreachable);
      ++unreachable;
    }
  }
  EXPECT_GT(unreachable, 0);
  EXPECT_EQ(c->inflight_bytes(), 0u);
  // Later calls fail at once, the same way.
  Status later = SendSyncSync(*c, img.value().handle);
  ASSERT_FALSE(later.ok());
  EXPECT_EQ(later.error().code, errc::kPeerUnreachable);
  EXPECT_FALSE(c->WaitForWindow(1, std::chrono::milliseconds(10)));
}

TEST_F(PeerTest, FrozenServerHitsIoTimeout) {
  ChildServer child(dir_.path(), "k");
  PeerClientOptions o;
  o.target = "127.0.0.1:" + std::to_string(child.port());
  o.key = "k";
  o.io_timeout = std::chrono::milliseconds(500);
  auto cr = PeerClient::Connect(o);
  ASSERT_TRUE(cr.ok());
  auto& c = cr.value();
  auto img = c->OpenImage("frozen.img", 4096, kBlock, false);
  ASSERT_TRUE(img.ok());
  child.Signal(SIGSTOP);
  const auto t0 = std::chrono::steady_clock::now();
  Status st = SendDataSync(*c, img.value().handle, 0, "hello");
  const auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, errc::kPeerUnreachable);
  EXPECT_NE(st.error().message.find("no acknowledgement"), std::string::npos) << st.error().message;
  EXPECT_GE(waited, std::chrono::milliseconds(400));
  EXPECT_LT(waited, std::chrono::seconds(5));
}

// Issue 17.3: a source that reconnects (same instance id) takes its image over from its
// own older session at once, active or not; another source still gets busy.
TEST_F(PeerTest, SameSourceTakesItsImageOverAtOnce) {
  StartServer();
  const ImageOrigin mine{kOrigin.identity, std::string(wire::kInstanceIdSize, 's'), false};
  const ImageOrigin other{kOrigin.identity, std::string(wire::kInstanceIdSize, 'o'), false};
  auto old_conn = MustConnect();
  ASSERT_TRUE(old_conn);
  auto a = old_conn->OpenImage("same.img", 2 * kBlock, kBlock, false, mine);
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_TRUE(SendDataSync(*old_conn, a.value().handle, 0, Pattern(kBlock, 2)).ok());
  auto stranger = MustConnect();
  auto refused = stranger->OpenImage("same.img", 2 * kBlock, kBlock, true, other);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, errc::kBusy);
  auto fresh = MustConnect();
  const auto t0 = std::chrono::steady_clock::now();
  auto b = fresh->OpenImage("same.img", 2 * kBlock, kBlock, true, mine);
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(4)) << "waited for the idle takeover";
  EXPECT_TRUE(b.value().existed);
  for (int i = 0; i < 100 && old_conn->alive(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(old_conn->alive());
}

TEST_F(PeerTest, ClientGoneKeepsPartialFileWithoutEnding) {
  StartServer();
  {
    auto c = MustConnect();
    ASSERT_TRUE(c);
    auto img = c->OpenImage("gone.img", 4 * kBlock, kBlock, false, kOrigin);
    ASSERT_TRUE(img.ok());
    ASSERT_TRUE(SendDataSync(*c, img.value().handle, 0, Pattern(kBlock, 1)).ok());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(Exists(dir_ / "gone.img"));
  EXPECT_EQ(StateXattr("gone.img"), "receiving");
  auto ev = observer_.events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].what, "receiving");
  // A new connection may resume it.
  auto c = MustConnect();
  auto r = c->OpenImage("gone.img", 4 * kBlock, kBlock, true, kOrigin);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r.value().existed);
}

TEST_F(PeerTest, ConcurrentSendersAllAcked) {
  StartServer();
  auto c = MustConnect();
  ASSERT_TRUE(c);
  auto img = c->OpenImage("mt.img", 64ull * kBlock, kBlock, false);
  ASSERT_TRUE(img.ok());
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::string data = Pattern(kBlock / 4, static_cast<uint32_t>(t));
      for (int i = 0; i < 64; ++i) {
        ASSERT_TRUE(c->WaitForWindow(data.size(), std::chrono::seconds(10)));
        // Thread t owns quarter t of every block: disjoint, so any order is fine.
        c->SendData(img.value().handle, static_cast<uint64_t>(i) * kBlock + static_cast<uint64_t>(t) * (kBlock / 4),
                    data.data(), static_cast<uint32_t>(data.size()), [&](const Status& s) { if (s.ok()) ++ok; });
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(c->FinishImage(img.value().handle).ok());
  EXPECT_EQ(ok.load(), 256);
  const std::string got = ReadFileBytes(dir_ / "mt.img");
  for (int t = 0; t < 4; ++t) {
    const std::string data = Pattern(kBlock / 4, static_cast<uint32_t>(t));
    EXPECT_EQ(got.substr(static_cast<size_t>(63) * kBlock + static_cast<size_t>(t) * (kBlock / 4), kBlock / 4), data);
  }
}

TEST_F(PeerTest, DestroyingClientFailsPendingAcks) {
  StartServer();
  auto c = MustConnect();
  ASSERT_TRUE(c);
  auto img = c->OpenImage("d.img", 64ull * kBlock, kBlock, false);
  ASSERT_TRUE(img.ok());
  std::atomic<int> calls{0}, unreachable{0};
  const std::string data = Pattern(kBlock, 1);
  for (int i = 0; i < 64; ++i) {
    c->SendData(img.value().handle, static_cast<uint64_t>(i) * kBlock, data.data(), kBlock, [&](const Status& s) {
      ++calls;
      if (!s.ok() && s.error().code == errc::kPeerUnreachable) ++unreachable;
    });
  }
  c.reset();  // returns after every AckFn ran
  EXPECT_EQ(calls.load(), 64);
}

TEST_F(PeerTest, StoppingServerMidStreamDoesNotHang) {
  StartServer();
  auto c = MustConnect();
  ASSERT_TRUE(c);
  auto img = c->OpenImage("s.img", 64ull * kBlock, kBlock, false);
  ASSERT_TRUE(img.ok());
  std::atomic<bool> stop{false};
  Blaster b;
  std::thread t([&] { b.Run(*c, img.value().handle, stop); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto t0 = std::chrono::steady_clock::now();
  server_.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  for (int i = 0; i < 100 && c->alive(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  stop = true;
  t.join();
  EXPECT_FALSE(c->alive());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::lock_guard<std::mutex> lk(b.mu);
  EXPECT_EQ(static_cast<int>(b.results.size()), b.sent.load());
  EXPECT_EQ(StateXattr("s.img"), "receiving");  // partial copy kept for a resume
}

class MountedTmpfs {
 public:
  explicit MountedTmpfs(const std::string& dir, const char* opts) : dir_(dir) {
    ::mkdir(dir.c_str(), 0755);
    ok_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts) == 0;
  }
  ~MountedTmpfs() {
    if (ok_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool ok() const { return ok_; }

 private:
  std::string dir_;
  bool ok_ = false;
};

TEST_F(PeerTest, EnospcBecomesTargetFullAndClientSurvives) {
  MountedTmpfs fs(dir_ / "small", "size=1m");
  if (!fs.ok()) GTEST_SKIP() << "cannot mount tmpfs (needs root)";
  ::close(dirfd_);
  dirfd_ = ::open((dir_ / "small").c_str(), O_RDONLY | O_DIRECTORY);
  StartServer();
  auto c = MustConnect();
  ASSERT_TRUE(c);
  auto img = c->OpenImage("full.img", 8 * kBlock, kBlock, false);
  ASSERT_TRUE(img.ok()) << img.error().message;
  const std::string data = Pattern(kBlock, 4);
  std::vector<Status> results;
  for (int i = 0; i < 8; ++i) results.push_back(SendDataSync(*c, img.value().handle, i * kBlock, data));
  int io_errors = 0;
  for (const Status& s : results) {
    if (s.ok()) continue;
    EXPECT_EQ(s.error().code, errc::kTargetFull);
    EXPECT_NE(s.error().message.find("ENOSPC"), std::string::npos) << s.error().message;
    EXPECT_NE(s.error().message.find("bytes free"), std::string::npos) << s.error().message;
    ++io_errors;
  }
  EXPECT_GT(io_errors, 0);
  EXPECT_TRUE(c->alive());
  // The connection still works: free space by zeroing, then write again.
  ASSERT_TRUE(SendZeroSync(*c, img.value().handle, 0, 8ull * kBlock).ok());
  EXPECT_TRUE(SendDataSync(*c, img.value().handle, 0, data).ok());
  EXPECT_TRUE(SendSyncSync(*c, img.value().handle).ok());
  server_.reset();
}

}  // namespace
}  // namespace migratefs::net
