// Client <-> server on loopback into a temp dir: the protocol round trips, ordering on
// the target, authentication, names, sessions. peer_stream_test.cc has the stream
// under load and failure.
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


TEST_F(PeerTest, ZeroResizeHashAndSparseness) {
  StartServer();
  auto c = MustConnect();
  ASSERT_TRUE(c);
  const uint64_t size = 64ull * kBlock;  // 32 MiB, mostly holes
  auto img = c->OpenImage("disk.raw", size, kBlock, false);
  ASSERT_TRUE(img.ok());
  const uint32_t h = img.value().handle;
  const std::string a = Pattern(kBlock, 11), b = Pattern(kBlock, 12);
  ASSERT_TRUE(SendDataSync(*c, h, 0, a).ok());
  ASSERT_TRUE(SendDataSync(*c, h, 1 * kBlock, b).ok());
  ASSERT_TRUE(SendDataSync(*c, h, 40ull * kBlock, a).ok());
  // Zero the second block again: it must read back as zeros and become a hole.
  ASSERT_TRUE(SendZeroSync(*c, h, 1 * kBlock, kBlock).ok());
  ASSERT_TRUE(SendSyncSync(*c, h).ok());

  const std::string path = dir_ / "disk.raw";
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), size);
  EXPECT_LE(static_cast<uint64_t>(st.st_blocks) * 512, 3ull * kBlock) << "target is not sparse";
  const int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::lseek(fd, 0, SEEK_HOLE), static_cast<off_t>(kBlock));
  EXPECT_EQ(::lseek(fd, kBlock, SEEK_DATA), static_cast<off_t>(40ull * kBlock));
  ::close(fd);

  // Hashes: data blocks match HashBlock of the bytes; holes, zeroed blocks and blocks
  // past EOF hash like zeros.
  auto hashes = c->HashBlocks(h, 0, 66);
  ASSERT_TRUE(hashes.ok()) << hashes.error().message;
  ASSERT_EQ(hashes.value().size(), 66u);
  const std::string zeros(kBlock, '\0');
  EXPECT_EQ(hashes.value()[0], HashBlock(a.data(), a.size()));
  EXPECT_EQ(hashes.value()[1], HashBlock(zeros.data(), zeros.size()));
  EXPECT_EQ(hashes.value()[2], HashBlock(nullptr, 0));
  EXPECT_EQ(hashes.value()[40], HashBlock(a.data(), a.size()));
  EXPECT_EQ(hashes.value()[65], HashBlock(zeros.data(), zeros.size()));

  // Shrink to 1.5 blocks, then grow back: the tail reads as zeros.
  ASSERT_TRUE(SendResizeSync(*c, h, kBlock + kBlock / 2).ok());
  ASSERT_TRUE(SendResizeSync(*c, h, 2 * kBlock).ok());
  ASSERT_TRUE(c->FinishImage(h).ok());
  EXPECT_EQ(ReadFileBytes(path), a + std::string(kBlock, '\0'));
}

// 1000 overlapping writes of distinct patterns and lengths, sent without waiting in
// rounds of 20; after each round (a sync is the barrier) the file must equal applying
// them in arrival order. Checking every round, not just the end, means a reordering
// anywhere shows up, not only one that no later write happened to cover.
void OverlappingWrites(PeerClient& c, const std::string& path) {
  auto img = c.OpenImage("ow.img", 1 << 16, kBlock, false);
  ASSERT_TRUE(img.ok());
  const uint32_t h = img.value().handle;
  std::string expect(1 << 16, '\0');
  std::atomic<int> acked{0}, failed{0};
  int bad_rounds = 0;
  for (int round = 0; round < 50; ++round) {
    for (int j = 0; j < 20; ++j) {
      const int i = round * 20 + j;
      // Every other write is 4 KiB-aligned, so the target's O_DIRECT and buffered
      // paths overwrite each other's bytes, and both must keep arrival order.
      const uint64_t off = static_cast<uint64_t>(i % 2 ? (i * 1237) % 32768 : ((i * 1237) % 8) * 4096);
      const std::string data = Pattern(4096 + static_cast<size_t>(i % 3) * 4096, static_cast<uint32_t>(1000 + i));
      expect.replace(off, data.size(), data);
      c.SendData(h, off, data.data(), static_cast<uint32_t>(data.size()), [&](const Status& st) {
        if (!st.ok()) ++failed;
        ++acked;
      });
    }
    ASSERT_TRUE(SendSyncSync(c, h).ok());  // a barrier: every earlier write completed
    if (ReadFileBytes(path) != expect) ++bad_rounds;
  }
  EXPECT_EQ(acked.load(), 1000);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(bad_rounds, 0) << "an older write landed after a newer one";
  ASSERT_TRUE(c.FinishImage(h).ok());
  EXPECT_TRUE(ReadFileBytes(path) == expect);
}

TEST_F(PeerTest, OverlappingWritesApplyInArrivalOrder) {
  StartServer();
  auto c = MustConnect();
  ASSERT_TRUE(c);
  OverlappingWrites(*c, dir_ / "ow.img");
}

// Serves one connection with a ReceiveSession built from `cfg` (test seams).
class OneSessionServer {
 public:
  OneSessionServer(SessionConfig cfg) {
    lfd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(lfd_, 1), 0);
    socklen_t al = sizeof a;
    ::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &al);
    port_ = ntohs(a.sin_port);
    cfg.receiving = &receiving_;
    thread_ = std::thread([this, cfg] {
      const int fd = ::accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      ReceiveSession session(fd, cfg);
      session.Run();
    });
  }
  ~OneSessionServer() {
    ::shutdown(lfd_, SHUT_RDWR);  // unblocks accept if nobody connected
    thread_.join();
    ::close(lfd_);
  }
  std::unique_ptr<PeerClient> Connect(const std::string& key) {
    PeerClientOptions o;
    o.target = "127.0.0.1:" + std::to_string(port_);
    o.key = key;
    auto c = PeerClient::Connect(o);
    EXPECT_TRUE(c.ok()) << c.error().message;
    return c.ok() ? std::move(c.value()) : nullptr;
  }

 private:
  int lfd_ = -1;
  uint16_t port_ = 0;
  ReceivingSet receiving_;
  std::thread thread_;
};

// Disk batches submitted in reverse: without the ordering rules the result would be
// wrong (checked by disabling them).
TEST_F(PeerTest, OverlappingWritesOrderedEvenWithReversedSubmission) {
  SessionConfig cfg;
  cfg.src_dirfd = dirfd_;
  cfg.key = "k";
  cfg.test_reverse_batches = true;
  OneSessionServer srv(cfg);
  auto c = srv.Connect("k");
  ASSERT_TRUE(c);
  OverlappingWrites(*c, dir_ / "ow.img");
}

TEST_F(PeerTest, DiskErrorIsReportedAndNothingIsWritten) {
  SessionConfig cfg;
  cfg.src_dirfd = dirfd_;
  cfg.key = "k";
  cfg.test_write_errno = [](const std::string& image, uint64_t offset, uint64_t) {
    return image == "eio.img" && offset == kBlock ? EIO : 0;
  };
  OneSessionServer srv(cfg);
  auto c = srv.Connect("k");
  ASSERT_TRUE(c);
  auto img = c->OpenImage("eio.img", 3 * kBlock, kBlock, false);
  ASSERT_TRUE(img.ok());
  const std::string data = Pattern(kBlock, 8);
  EXPECT_TRUE(SendDataSync(*c, img.value().handle, 0, data).ok());
  Status bad = SendDataSync(*c, img.value().handle, kBlock, data);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, errc::kIo);
  EXPECT_NE(bad.error().message.find("EIO"), std::string::npos) << bad.error().message;
  EXPECT_NE(bad.error().message.find("eio.img"), std::string::npos) << bad.error().message;
  EXPECT_TRUE(SendDataSync(*c, img.value().handle, 2 * kBlock, data).ok());
  ASSERT_TRUE(c->FinishImage(img.value().handle).ok());
  EXPECT_EQ(ReadFileBytes(dir_ / "eio.img"), data + std::string(kBlock, '\0') + data);
}

TEST_F(PeerTest, ResumeKeepsPartialCopyAndAbortVariants) {
  StartServer();
  auto c = MustConnect();
  ASSERT_TRUE(c);
  auto img = c->OpenImage("r.img", 2 * kBlock, kBlock, false, kOrigin);
  ASSERT_TRUE(img.ok());
  const std::string a = Pattern(kBlock, 3);
  ASSERT_TRUE(SendDataSync(*c, img.value().handle, 0, a).ok());
  ASSERT_TRUE(c->AbortImage(img.value().handle, /*keep_partial=*/true).ok());
  EXPECT_EQ(StateXattr("r.img"), "incomplete");
  // The handle is gone.
  EXPECT_FALSE(SendDataSync(*c, img.value().handle, 0, a).ok());

  auto again = c->OpenImage("r.img", 2 * kBlock, kBlock, /*resume=*/true, kOrigin);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again.value().existed);
  EXPECT_EQ(again.value().target_size, 2ull * kBlock);
  EXPECT_EQ(StateXattr("r.img"), "receiving");
  auto hashes = c->HashBlocks(again.value().handle, 0, 2);
  ASSERT_TRUE(hashes.ok());
  EXPECT_EQ(hashes.value()[0], HashBlock(a.data(), a.size()));
  ASSERT_TRUE(c->AbortImage(again.value().handle, /*keep_partial=*/false).ok());
  EXPECT_FALSE(Exists(dir_ / "r.img"));

  auto ev = observer_.events();
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[1].what, "ended");
  EXPECT_FALSE(ev[1].complete);
  EXPECT_EQ(ev[3].what, "ended");
  EXPECT_FALSE(ev[3].complete);

  // Without resume an existing file is truncated first (here a file of no identity,
  // so only with overwrite).
  {
    std::ofstream(dir_ / "t.img") << "old contents";
  }
  auto foreign = c->OpenImage("t.img", 100, kBlock, false, kOrigin);
  ASSERT_FALSE(foreign.ok());
  EXPECT_EQ(foreign.error().code, errc::kTargetExists);
  EXPECT_EQ(ReadFileBytes(dir_ / "t.img"), "old contents");
  auto t = c->OpenImage("t.img", 100, kBlock, false, ImageOrigin{kOrigin.identity, "", /*overwrite=*/true});
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t.value().existed);
  EXPECT_EQ(t.value().target_size, 12u);
  ASSERT_TRUE(c->FinishImage(t.value().handle).ok());
  EXPECT_EQ(ReadFileBytes(dir_ / "t.img"), std::string(100, '\0'));
}

TEST_F(PeerTest, AuthFailuresCreateNothing) {
  StartServer("right-key");
  for (const std::string& key : {std::string("wrong-key"), std::string("")}) {
    auto c = Connect(key);
    ASSERT_FALSE(c.ok()) << "key '" << key << "'";
    EXPECT_EQ(c.error().code, errc::kAuthFailed) << c.error().message;
  }
  server_.reset();
  StartServer("", /*insecure=*/true);
  auto c = Connect("some-key");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, errc::kAuthFailed) << c.error().message;
  auto ok = Connect("");  // insecure <-> insecure works
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_TRUE(std::filesystem::is_empty(dir_.path()));
  EXPECT_TRUE(observer_.events().empty());
}

TEST_F(PeerTest, ServerWithoutKeyNeedsInsecure) {
  PeerServerOptions o;
  o.listen = "127.0.0.1:0";
  o.src_dirfd = dirfd_;
  auto s = PeerServer::Start(o, &observer_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, errc::kInvalidArgument);
}

TEST_F(PeerTest, BadNamesAreRefusedAndNothingIsCreated) {
  // The served directory is dir_/served; dir_ holds an outside file and a symlink trap.
  TempDir outside;
  ASSERT_EQ(::mkdir((dir_ / "served").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir_ / "served/sub").c_str(), 0755), 0);
  ASSERT_EQ(::symlink(outside.path().c_str(), (dir_ / "served/escape").c_str()), 0);
  ASSERT_EQ(::symlink("/etc/passwd", (dir_ / "served/link.img").c_str()), 0);
  ::close(dirfd_);
  dirfd_ = ::open((dir_ / "served").c_str(), O_RDONLY | O_DIRECTORY);
  StartServer();
  auto c = MustConnect();
  ASSERT_TRUE(c);

  // The client validates too; talk to the server with names the client would refuse
  // by checking both layers: client-side first.
  for (const char* n : {"../x", "/etc/evil", "", "a//b", "./x", "sub/../../x"}) {
    auto r = c->OpenImage(n, 4096, kBlock, false);
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.error().code, errc::kBadName) << n;
  }
  // Names that are lexically fine but resolve through symlinks.
  for (const char* n : {"escape/x.img", "link.img"}) {
    auto r = c->OpenImage(n, 4096, kBlock, false);
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.error().code, errc::kBadName) << n << ": " << r.error().message;
  }
  auto missing = c->OpenImage("nodir/x.img", 4096, kBlock, false);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, errc::kNotFound);
  auto dir = c->OpenImage("sub", 4096, kBlock, false);
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.error().code, errc::kBadName);
  EXPECT_TRUE(c->alive());
  // A valid name in an existing subdirectory still works on the same connection.
  auto ok = c->OpenImage("sub/x.img", 4096, kBlock, false);
  ASSERT_TRUE(ok.ok()) << ok.error().message;

  EXPECT_TRUE(std::filesystem::is_empty(outside.path()));
  EXPECT_EQ(ReadFileBytes("/etc/passwd").find(std::string(4096, '\0')), std::string::npos);
  EXPECT_FALSE(Exists(dir_ / "x"));
  EXPECT_FALSE(Exists(dir_ / "served/nodir"));
  EXPECT_EQ(observer_.events().size(), 1u);
}

TEST_F(PeerTest, SameImageFromTwoConnectionsIsBusy) {
  StartServer();
  auto c1 = MustConnect();
  auto c2 = MustConnect();
  ASSERT_TRUE(c1 && c2);
  auto a = c1->OpenImage("shared.img", 4096, kBlock, false, kOrigin);
  ASSERT_TRUE(a.ok());
  auto b = c2->OpenImage("shared.img", 4096, kBlock, true, kOrigin);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, errc::kBusy);
  ASSERT_TRUE(c1->FinishImage(a.value().handle).ok());
  auto c = c2->OpenImage("shared.img", 4096, kBlock, true, kOrigin);
  EXPECT_TRUE(c.ok());
}

TEST_F(PeerTest, IdleHolderIsTakenOverByReconnectingSource) {
  PeerServerOptions o;
  o.listen = "127.0.0.1:0";
  o.key = "sekrit-key";
  o.src_dirfd = dirfd_;
  o.idle_takeover = std::chrono::milliseconds(300);
  auto s = PeerServer::Start(o, &observer_);
  ASSERT_TRUE(s.ok());
  server_ = std::move(s.value());
  auto old_conn = MustConnect();  // stands for a connection whose link was cut
  ASSERT_TRUE(old_conn);
  auto a = old_conn->OpenImage("t.img", 2 * kBlock, kBlock, false, kOrigin);
  ASSERT_TRUE(a.ok());
  const std::string first = Pattern(kBlock, 1);
  ASSERT_TRUE(SendDataSync(*old_conn, a.value().handle, 0, first).ok());
  auto fresh = MustConnect();
  auto busy = fresh->OpenImage("t.img", 2 * kBlock, kBlock, true, kOrigin);
  ASSERT_FALSE(busy.ok());  // the holder was active a moment ago
  EXPECT_EQ(busy.error().code, errc::kBusy);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  auto b = fresh->OpenImage("t.img", 2 * kBlock, kBlock, true, kOrigin);
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_TRUE(b.value().existed);
  auto hashes = fresh->HashBlocks(b.value().handle, 0, 1);
  ASSERT_TRUE(hashes.ok());
  EXPECT_EQ(hashes.value()[0], HashBlock(first.data(), first.size()));
  for (int i = 0; i < 100 && old_conn->alive(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(old_conn->alive()) << "the old session was stopped";
  ASSERT_TRUE(SendDataSync(*fresh, b.value().handle, kBlock, first).ok());
  ASSERT_TRUE(fresh->FinishImage(b.value().handle).ok());
  EXPECT_EQ(ReadFileBytes(dir_ / "t.img"), first + first);
}

TEST_F(PeerTest, ListenOnAnyAddressAndConnectByName) {
  PeerServerOptions o;
  o.listen = ":0";
  o.key = "sekrit-key";
  o.src_dirfd = dirfd_;
  auto s = PeerServer::Start(o, &observer_);
  ASSERT_TRUE(s.ok()) << s.error().message;
  for (std::string host : {"127.0.0.1", "localhost"}) {
    PeerClientOptions co;
    co.target = host + ":" + std::to_string(s.value()->port());
    co.key = "sekrit-key";
    auto c = PeerClient::Connect(co);
    EXPECT_TRUE(c.ok()) << host << ": " << c.error().message;
  }
  PeerClientOptions bad;
  bad.target = "127.0.0.1";  // no port
  auto c = PeerClient::Connect(bad);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, errc::kInvalidArgument);
  bad.target = "127.0.0.1:1";  // nothing listens there
  c = PeerClient::Connect(bad);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, errc::kPeerUnreachable);
}

TEST_F(PeerTest, RequestErrorsDoNotKillTheConnection) {
  StartServer();
  auto c = MustConnect();
  ASSERT_TRUE(c);
  Status st = SendDataSync(*c, 999, 0, "x");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, errc::kInvalidArgument);
  auto img = c->OpenImage("e.img", 4096, kBlock, false);
  ASSERT_TRUE(img.ok());
  st = SendZeroSync(*c, img.value().handle, wire::kMaxImageSize, 4096);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, errc::kInvalidArgument);
  st = SendResizeSync(*c, img.value().handle, wire::kMaxImageSize + 1);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(c->alive());
  EXPECT_TRUE(SendDataSync(*c, img.value().handle, 0, "fine").ok());
}

// ---- a raw peer that speaks the protocol by hand ----

int RawConnect(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

Deadline Soon() { return std::chrono::steady_clock::now() + std::chrono::seconds(3); }

TEST_F(PeerTest, HugeLengthAfterHandshakeDropsConnection) {
  StartServer();
  const int fd = RawConnect(server_->port());
  ASSERT_TRUE(RunClientHandshake(fd, "sekrit-key", Soon()).ok());
  // Open an image properly first, so there is something a write could hit.
  FrameHeader h;
  h.type = wire::FrameType::kOpenImage;
  h.request_id = 1;
  std::string f = EncodeFrame(h, EncodeOpenImage({1 << 20, kBlock, "raw.img", "", ""}));
  ASSERT_TRUE(WriteAllFd(fd, f.data(), f.size(), Soon()).ok());
  auto ack = ReadFrameFd(fd, Soon());
  ASSERT_TRUE(ack.ok());
  ASSERT_EQ(ack.value().header.type, wire::FrameType::kAck);
  // A data frame claiming a 4 GiB payload (and length), then some bytes.
  h = FrameHeader{};
  h.type = wire::FrameType::kData;
  h.request_id = 2;
  h.handle = ack.value().header.handle;
  h.length = 0xFFFFFFFFull;
  uint8_t raw[wire::kHeaderSize];
  h.payload_len = 0;
  EncodeHeader(h, nullptr, raw);
  PutLe32(raw + 32, 0xFFFFFFFFu);
  ASSERT_TRUE(WriteAllFd(fd, raw, sizeof raw, Soon()).ok());
  const std::string junk(1 << 16, 'J');
  (void)WriteAllFd(fd, junk.data(), junk.size(), Soon());
  auto err = ReadFrameFd(fd, Soon());
  ASSERT_TRUE(err.ok()) << err.error().message;
  EXPECT_EQ(err.value().header.type, wire::FrameType::kError);
  EXPECT_EQ(err.value().header.request_id, 0u);
  Error e = DecodeErrorPayload(err.value().payload.data(), err.value().payload.size());
  EXPECT_EQ(e.code, errc::kTooLarge);
  // Then the server closes.
  char b;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(ReadAllFd(fd, &b, 1, Soon()).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  ::close(fd);
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "raw.img").c_str(), &st), 0);
  EXPECT_EQ(st.st_blocks, 0);  // nothing written
  // The partial copy stays marked, and the session's end is not a completion.
  EXPECT_EQ(StateXattr("raw.img"), "receiving");
  for (const auto& ev : observer_.events()) EXPECT_NE(ev.what, "ended");
}

TEST_F(PeerTest, BadChecksumDropsConnectionWithoutWriting) {
  StartServer();
  const int fd = RawConnect(server_->port());
  ASSERT_TRUE(RunClientHandshake(fd, "sekrit-key", Soon()).ok());
  FrameHeader h;
  h.type = wire::FrameType::kOpenImage;
  h.request_id = 1;
  std::string f = EncodeFrame(h, EncodeOpenImage({1 << 20, kBlock, "cs.img", "", ""}));
  ASSERT_TRUE(WriteAllFd(fd, f.data(), f.size(), Soon()).ok());
  auto ack = ReadFrameFd(fd, Soon());
  ASSERT_TRUE(ack.ok());
  h = FrameHeader{};
  h.type = wire::FrameType::kData;
  h.request_id = 2;
  h.handle = ack.value().header.handle;
  h.length = 4096;
  f = EncodeFrame(h, std::string(4096, 'A'));
  f.back() ^= 1;  // corrupt the payload
  ASSERT_TRUE(WriteAllFd(fd, f.data(), f.size(), Soon()).ok());
  auto err = ReadFrameFd(fd, Soon());
  ASSERT_TRUE(err.ok());
  EXPECT_EQ(err.value().header.type, wire::FrameType::kError);
  ::close(fd);
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "cs.img").c_str(), &st), 0);
  EXPECT_EQ(st.st_blocks, 0);
}

TEST_F(PeerTest, StalledHandshakeIsDropped) {
  StartServer();  // handshake_timeout 1 s
  const int fd = RawConnect(server_->port());
  const auto t0 = std::chrono::steady_clock::now();
  char b;
  Status st = ReadAllFd(fd, &b, 1, t0 + std::chrono::seconds(5));
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("closed"), std::string::npos) << st.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(3000));
  ::close(fd);
}

TEST_F(PeerTest, SessionLimit) {
  PeerServerOptions o;
  o.listen = "127.0.0.1:0";
  o.key = "sekrit-key";
  o.src_dirfd = dirfd_;
  o.max_sessions = 2;
  auto s = PeerServer::Start(o, &observer_);
  ASSERT_TRUE(s.ok());
  server_ = std::move(s.value());
  auto c1 = MustConnect();
  auto c2 = MustConnect();
  ASSERT_TRUE(c1 && c2);
  auto c3 = Connect();
  ASSERT_FALSE(c3.ok());
  EXPECT_EQ(c3.error().code, errc::kBusy) << c3.error().message;
  c1.reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto c4 = Connect();
  EXPECT_TRUE(c4.ok());
}

}  // namespace
}  // namespace migratefs::net
