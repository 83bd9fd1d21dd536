// Client <-> server on loopback: the send path's order and batching: frames the socket
// takes in part, AckFns that send again, awaited writes against block copies, held
// awaited frames (awaited_batch_after) and coalesced ones (coalesce_delay).
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


}  // namespace
}  // namespace migratefs::net
