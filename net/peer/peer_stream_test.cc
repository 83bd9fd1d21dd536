// Client <-> server on loopback: the stream under load and failure: the flow-control
// window, peers that die or freeze mid-stream, the send path's order (partial
// writes, awaited and coalesced frames), concurrent senders, a full target disk.
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
PeerClientOptions ChildClientOptions(const ChildServer& child) {
  PeerClientOptions o;
  o.target = "127.0.0.1:" + std::to_string(child.port());
  o.key = "k";
  return o;
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

// A frame queued while nothing is being written is written by the caller's thread
// (PeerClientOptions::send_from_caller). Against a frozen server the socket soon takes
// only part of one: the I/O thread must finish exactly the rest, and every later frame
// after it, in order (a byte lost or repeated would fail the frame checksum and drop the
// connection; a reordering would leave an older pattern on the target).
TEST_F(PeerTest, FramesTheSocketTakesPartlyAreFinishedInOrder) {
  ChildServer child(dir_.path(), "k");
  ASSERT_NE(child.port(), 0);
  auto cr = PeerClient::Connect(ChildClientOptions(child));
  ASSERT_TRUE(cr.ok()) << cr.error().message;
  auto& c = cr.value();
  auto img = c->OpenImage("partial.img", 4ull * kBlock, kBlock, false);
  ASSERT_TRUE(img.ok());
  const uint32_t h = img.value().handle;
  child.Signal(SIGSTOP);
  std::atomic<int> ok{0};
  constexpr int kFrames = 48;  // 24 MiB: far more than both socket buffers hold
  for (int i = 0; i < kFrames; ++i) {
    const std::string data = Pattern(kBlock, static_cast<uint32_t>(i));
    c->SendData(h, static_cast<uint64_t>(i % 4) * kBlock, data.data(), kBlock, [&](const Status& s) { ok += s.ok(); });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  child.Signal(SIGCONT);
  Status st = SendSyncSync(*c, h);
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(ok.load(), kFrames);
  ASSERT_TRUE(c->FinishImage(h).ok());
  const std::string got = ReadFileBytes(dir_ / "partial.img");
  ASSERT_EQ(got.size(), 4u * kBlock);
  for (int b = 0; b < 4; ++b) {
    EXPECT_TRUE(got.substr(static_cast<size_t>(b) * kBlock, kBlock) ==
                Pattern(kBlock, static_cast<uint32_t>(kFrames - 4 + b)))
        << "block " << b << " is not the last write of it";
  }
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

TEST_F(PeerTest, AckFnMaySendAgain) {
  StartServer();
  auto c = MustConnect();
  ASSERT_TRUE(c);
  auto img = c->OpenImage("chain.img", 100 * 4096, kBlock, false);
  ASSERT_TRUE(img.ok());
  const uint32_t h = img.value().handle;
  std::promise<void> done;
  std::function<void(int)> step = [&](int i) {
    if (i == 100) {
      done.set_value();
      return;
    }
    const std::string data(4096, static_cast<char>('a' + i % 26));
    c->SendData(h, static_cast<uint64_t>(i) * 4096, data.data(), 4096, [&, i](const Status& st) {
      EXPECT_TRUE(st.ok());
      step(i + 1);  // called on the I/O thread, sends the next one
    });
  };
  step(0);
  ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_TRUE(c->FinishImage(h).ok());
  const std::string got = ReadFileBytes(dir_ / "chain.img");
  ASSERT_EQ(got.size(), 100u * 4096);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(got[static_cast<size_t>(i) * 4096], static_cast<char>('a' + i % 26));
}

// Awaited writes (a synchronous mirror's) bypass the ring and are written at once; they
// must still land after an earlier block write of the same range (I3) and never
// before it, whichever path each takes.
TEST_F(PeerTest, AwaitedWritesKeepTheirOrderWithBlockWrites) {
  StartServer();
  auto c = MustConnect();
  ASSERT_TRUE(c);
  auto img = c->OpenImage("aw.img", 16ull * kBlock, kBlock, false);
  ASSERT_TRUE(img.ok());
  const uint32_t h = img.value().handle;
  std::atomic<int> ok{0};
  for (int i = 0; i < 16; ++i) {
    // A block copy (the bulk path: queued ahead frames may pass it, but not one of its
    // own bytes), written direct through the ring on the target.
    const std::string block = Pattern(kBlock, static_cast<uint32_t>(i));
    PayloadBuffer buf = c->AcquireBuffer(kBlock);
    std::memcpy(buf.get(), block.data(), kBlock);
    c->SendData(h, static_cast<uint64_t>(i) * kBlock, std::move(buf), kBlock, [&](const Status& s) { ok += s.ok(); });
    const std::string page(4096, static_cast<char>('A' + i));  // awaited, inline, same range
    c->SendData(
        h, static_cast<uint64_t>(i) * kBlock + 8192, page.data(), 4096, [&](const Status& s) { ok += s.ok(); },
        SendPace::kAwaited);
  }
  ASSERT_TRUE(c->FinishImage(h).ok());
  EXPECT_EQ(ok.load(), 32);
  const std::string got = ReadFileBytes(dir_ / "aw.img");
  ASSERT_EQ(got.size(), 16u * kBlock);
  for (int i = 0; i < 16; ++i) {
    std::string want = Pattern(kBlock, static_cast<uint32_t>(i));
    want.replace(8192, 4096, std::string(4096, static_cast<char>('A' + i)));
    EXPECT_TRUE(got.substr(static_cast<size_t>(i) * kBlock, kBlock) == want) << "block " << i << " differs";
  }
}

// A synchronous mirror under a deep queue (awaited_batch_after): an awaited frame
// queued behind enough unanswered ones is held until their replies arrive, then leaves
// with the others held meanwhile in one write, in order. The target is frozen while
// they are queued, so no reply can pass them, and the hold's own bound is an hour, so
// only the replies can send them; below the threshold nothing is held.
TEST_F(PeerTest, AwaitedFramesBehindTheThresholdLeaveTogetherWithTheReplies) {
  ChildServer child(dir_.path(), "k");
  PeerClientOptions o = ChildClientOptions(child);
  o.coalesce_delay = std::chrono::hours(1);
  o.awaited_batch_wait = std::chrono::hours(1);
  o.awaited_batch_after = 3;
  auto cr = PeerClient::Connect(o);
  ASSERT_TRUE(cr.ok()) << cr.error().message;
  auto& c = cr.value();
  auto img = c->OpenImage("batch.img", 4 * 4096, kBlock, false);
  ASSERT_TRUE(img.ok());
  const uint32_t h = img.value().handle;
  std::vector<std::string> pages;
  for (int i = 0; i < 24; ++i) pages.emplace_back(4096, static_cast<char>('a' + i));
  std::atomic<int> ok{0}, acked{0};
  auto ack = [&](const Status& s) {
    ok += s.ok();
    acked++;
  };
  child.Freeze();
  const uint64_t before = c->writes_issued();
  for (int i = 0; i < 24; ++i) {
    c->SendData(h, static_cast<uint64_t>(i % 4) * 4096, pages[i].data(), 4096, ack, SendPace::kAwaited);
  }
  // The first three left at once, one write each; the other 21 are held.
  EXPECT_EQ(c->writes_issued() - before, 3u);
  child.Signal(SIGCONT);
  for (int i = 0; i < 1000 && acked.load() < 24; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(acked.load(), 24) << "held frames were not sent when the replies came";
  EXPECT_EQ(ok.load(), 24);
  // The held 21 in one write (two, if a reply arrived apart from the others).
  EXPECT_LE(c->writes_issued() - before, 5u);
  ASSERT_TRUE(c->FinishImage(h).ok());
  std::string want;
  for (int k = 0; k < 4; ++k) want += pages[20 + k];  // the last write of each page wins
  EXPECT_EQ(ReadFileBytes(dir_ / "batch.img"), want);
}

// On a slow link the oldest reply is a round trip away: a held awaited frame leaves
// after awaited_batch_wait without it (here the target is frozen: no reply comes).
TEST_F(PeerTest, AHeldAwaitedFrameLeavesAfterItsWaitWhenNoReplyComes) {
  ChildServer child(dir_.path(), "k");
  PeerClientOptions o = ChildClientOptions(child);
  o.coalesce_delay = std::chrono::hours(1);  // not the bound that applies
  o.awaited_batch_after = 1;
  o.awaited_batch_wait = std::chrono::milliseconds(20);
  auto cr = PeerClient::Connect(o);
  ASSERT_TRUE(cr.ok()) << cr.error().message;
  auto& c = cr.value();
  auto img = c->OpenImage("slow.img", 8192, kBlock, false);
  ASSERT_TRUE(img.ok());
  child.Freeze();
  const uint64_t before = c->writes_issued();
  std::atomic<int> ok{0};
  const std::string page(4096, 'w');
  for (int i = 0; i < 2; ++i) {
    c->SendData(img.value().handle, static_cast<uint64_t>(i) * 4096, page.data(), 4096,
                [&](const Status& s) { ok += s.ok(); }, SendPace::kAwaited);
  }
  EXPECT_EQ(c->writes_issued() - before, 1u) << "the second write was not held";
  for (int i = 0; i < 200 && c->writes_issued() - before < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(c->writes_issued() - before, 2u) << "the held write waited for a reply that never came";
  child.Signal(SIGCONT);
  for (int i = 0; i < 500 && ok.load() < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(ok.load(), 2);
}

// An asynchronous mirror's writes (kCoalesced) wait for company; the next frame that
// may not wait takes them along in one gathered write, in their order (I3: later
// writes of the same range win on the target).
TEST_F(PeerTest, CoalescedFramesWaitAndLeaveInOrderWithTheNextUrgentFrame) {
  StartServer();
  auto c = MustConnectCoalescing(std::chrono::hours(1), 1u << 20);
  ASSERT_TRUE(c);
  auto img = c->OpenImage("co.img", 8 * 4096, kBlock, false);
  ASSERT_TRUE(img.ok());
  const uint32_t h = img.value().handle;
  const uint64_t writes_before = c->writes_issued();
  std::atomic<int> acked{0};
  for (int i = 0; i < 40; ++i) {  // five rounds over eight pages
    const std::string page(4096, static_cast<char>('a' + i));
    c->SendData(h, static_cast<uint64_t>(i % 8) * 4096, page.data(), 4096, [&](const Status& s) { acked += s.ok(); },
                SendPace::kCoalesced);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(acked.load(), 0) << "held frames were sent before their delay or an urgent frame";
  EXPECT_EQ(c->writes_issued(), writes_before);
  ASSERT_TRUE(SendSyncSync(*c, h).ok());
  EXPECT_EQ(acked.load(), 40);
  EXPECT_EQ(c->writes_issued(), writes_before + 1) << "40 writes and the sync should share one send";
  ASSERT_TRUE(c->FinishImage(h).ok());
  const std::string got = ReadFileBytes(dir_ / "co.img");
  ASSERT_EQ(got.size(), 8u * 4096);
  for (int k = 0; k < 8; ++k) EXPECT_EQ(got[static_cast<size_t>(k) * 4096], static_cast<char>('a' + 32 + k)) << k;
}

TEST_F(PeerTest, ALoneCoalescedFrameLeavesAfterTheDelay) {
  StartServer();
  auto c = MustConnectCoalescing(std::chrono::milliseconds(20), 1u << 20);
  ASSERT_TRUE(c);
  auto img = c->OpenImage("lone.img", 4096, kBlock, false);
  ASSERT_TRUE(img.ok());
  std::promise<Status> acked;
  const std::string page(4096, 'z');
  c->SendData(img.value().handle, 0, page.data(), 4096, [&](const Status& s) { acked.set_value(s); },
              SendPace::kCoalesced);
  auto f = acked.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "the flush timer never fired";
  EXPECT_TRUE(f.get().ok());
  ASSERT_TRUE(c->FinishImage(img.value().handle).ok());
  EXPECT_EQ(ReadFileBytes(dir_ / "lone.img"), page);
}

TEST_F(PeerTest, CoalescedFramesLeaveOnceTheByteCapIsHeld) {
  StartServer();
  auto c = MustConnectCoalescing(std::chrono::hours(1), 64u << 10);
  ASSERT_TRUE(c);
  auto img = c->OpenImage("cap.img", 32 * 4096, kBlock, false);
  ASSERT_TRUE(img.ok());
  std::atomic<int> acked{0};
  for (int i = 0; i < 32; ++i) {
    const std::string page(4096, static_cast<char>('A' + i % 26));
    c->SendData(img.value().handle, static_cast<uint64_t>(i) * 4096, page.data(), 4096,
                [&](const Status& s) { acked += s.ok(); }, SendPace::kCoalesced);
  }
  // The 16th frame passes 64 KiB on the wire (headers included): the first 16 leave
  // without any urgent frame and long before the delay.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (acked.load() < 16 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GE(acked.load(), 16);
  ASSERT_TRUE(c->FinishImage(img.value().handle).ok());  // takes the rest along
  EXPECT_EQ(acked.load(), 32);
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
