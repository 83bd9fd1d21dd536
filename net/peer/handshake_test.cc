#include "net/peer/handshake.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <future>
#include <new>
#include <thread>

#include "net/peer/frame.h"
#include "net/peer/peer_test_util.h"

// Largest single operator-new request while g_track_allocs is set: lets a test show
// that a hostile length in a frame header was never allocated.
static std::atomic<bool> g_track_allocs{false};
static std::atomic<size_t> g_largest_alloc{0};

// noinline: once inlined, GCC pairs the free() below with a new-expression and warns.
__attribute__((noinline)) void* operator new(size_t n) {
  if (g_track_allocs.load(std::memory_order_relaxed)) {
    size_t cur = g_largest_alloc.load(std::memory_order_relaxed);
    while (n > cur && !g_largest_alloc.compare_exchange_weak(cur, n)) {
    }
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
__attribute__((noinline)) void operator delete(void* p) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace migratefs::net {
namespace {

using wire::FrameType;

Deadline Soon() { return std::chrono::steady_clock::now() + std::chrono::seconds(2); }

struct Pair {
  int c = -1, s = -1;
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    c = fds[0];
    s = fds[1];
  }
  ~Pair() {
    ::close(c);
    ::close(s);
  }
};

struct Both {
  Result<HandshakeResult> client = MakeError("x", "x");
  Result<HandshakeResult> server = MakeError("x", "x");
};

Both RunBoth(const std::string& ckey, const std::string& skey) {
  Pair p;
  auto sf = std::async(std::launch::async, [&] { return RunServerHandshake(p.s, skey, Soon()); });
  Both b;
  b.client = RunClientHandshake(p.c, ckey, Soon());
  if (!b.client.ok()) ::shutdown(p.c, SHUT_RDWR);  // unblock a server waiting for auth
  b.server = sf.get();
  return b;
}

TEST(HandshakeTest, SameKeySucceedsBothWays) {
  Both b = RunBoth("k3y", "k3y");
  ASSERT_TRUE(b.client.ok()) << b.client.error().message;
  ASSERT_TRUE(b.server.ok()) << b.server.error().message;
  EXPECT_TRUE(b.client.value().authenticated);
  EXPECT_EQ(b.client.value().version, wire::kVersion);
  EXPECT_EQ(b.client.value().features, wire::kFeaturesSupported);
}

TEST(HandshakeTest, InsecureBothSides) {
  Both b = RunBoth("", "");
  ASSERT_TRUE(b.client.ok());
  ASSERT_TRUE(b.server.ok());
  EXPECT_FALSE(b.client.value().authenticated);
}

TEST(HandshakeTest, WrongKeyFailsOnBothSides) {
  Both b = RunBoth("key-a", "key-b");
  ASSERT_FALSE(b.client.ok());
  ASSERT_FALSE(b.server.ok());
  EXPECT_EQ(b.client.error().code, errc::kAuthFailed) << b.client.error().message;
  EXPECT_EQ(b.server.error().code, errc::kAuthFailed);
}

TEST(HandshakeTest, KeyVersusInsecureRefused) {
  Both b = RunBoth("key", "");
  ASSERT_FALSE(b.client.ok());
  EXPECT_EQ(b.client.error().code, errc::kAuthFailed);
  EXPECT_NE(b.client.error().message.find("insecure"), std::string::npos) << b.client.error().message;
  EXPECT_FALSE(b.server.ok());

  Both c = RunBoth("", "key");
  ASSERT_FALSE(c.client.ok());
  EXPECT_EQ(c.client.error().code, errc::kAuthFailed);
  EXPECT_NE(c.client.error().message.find("requires a pre-shared key"), std::string::npos) << c.client.error().message;
  EXPECT_FALSE(c.server.ok());
}

TEST(HandshakeTest, MacBindsRoleAndTranscript) {
  const std::string a = HandshakeMac("k", wire::kClientLabel, "hello", "chal");
  EXPECT_EQ(a.size(), wire::kMacSize);
  EXPECT_NE(a, HandshakeMac("k", wire::kServerLabel, "hello", "chal"));
  EXPECT_NE(a, HandshakeMac("k", wire::kClientLabel, "hellp", "chal"));
  EXPECT_NE(a, HandshakeMac("k", wire::kClientLabel, "hello", "chak"));
  EXPECT_NE(a, HandshakeMac("j", wire::kClientLabel, "hello", "chal"));
}

// A fake server without the key reflects the client's own proof back as its proof.
TEST(HandshakeTest, ReflectedProofIsRejected) {
  Pair p;
  auto fake = std::async(std::launch::async, [&] {
    auto hello = ReadFrameFd(p.s, Soon());
    if (!hello.ok()) return;
    HelloPayload c;
    c.min_version = c.max_version = wire::kVersion;
    c.features = wire::kFeaturesSupported;
    c.auth_mode = wire::kAuthHmacSha256;
    FrameHeader h;
    h.type = FrameType::kChallenge;
    const std::string f = EncodeFrame(h, EncodeHello(c));
    (void)WriteAllFd(p.s, f.data(), f.size(), Soon());
    auto auth = ReadFrameFd(p.s, Soon());
    if (!auth.ok()) return;
    h.type = FrameType::kAuth;
    const std::string back =
        EncodeFrame(h, std::string(auth.value().payload.begin(), auth.value().payload.end()));
    (void)WriteAllFd(p.s, back.data(), back.size(), Soon());
  });
  auto r = RunClientHandshake(p.c, "key", Soon());
  fake.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, errc::kAuthFailed);
}

// A client replaying a proof from an earlier session fails: the server's nonce differs.
TEST(HandshakeTest, ReplayedProofIsRejected) {
  std::string recorded_hello, recorded_auth;
  // A Hello and an Auth that were valid for an earlier challenge.
  HelloPayload h;
  h.auth_mode = wire::kAuthHmacSha256;
  h.features = wire::kFeaturesSupported;
  recorded_hello = EncodeHello(h);
  HelloPayload old_chal;
  old_chal.min_version = old_chal.max_version = wire::kVersion;
  old_chal.features = wire::kFeaturesSupported;
  old_chal.auth_mode = wire::kAuthHmacSha256;
  recorded_auth = HandshakeMac("key", wire::kClientLabel, recorded_hello, EncodeHello(old_chal));

  Pair p;
  auto sf = std::async(std::launch::async, [&] { return RunServerHandshake(p.s, "key", Soon()); });
  FrameHeader fh;
  fh.type = FrameType::kHello;
  std::string f = EncodeFrame(fh, recorded_hello);
  ASSERT_TRUE(WriteAllFd(p.c, f.data(), f.size(), Soon()).ok());
  ASSERT_TRUE(ReadFrameFd(p.c, Soon()).ok());  // the (fresh) challenge
  fh.type = FrameType::kAuth;
  f = EncodeFrame(fh, recorded_auth);
  ASSERT_TRUE(WriteAllFd(p.c, f.data(), f.size(), Soon()).ok());
  auto reply = ReadFrameFd(p.c, Soon());
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply.value().header.type, FrameType::kError);
  auto s = sf.get();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, errc::kAuthFailed);
}

TEST(HandshakeTest, NotAPeerIsRefused) {
  Pair p;
  auto sf = std::async(std::launch::async, [&] { return RunServerHandshake(p.s, "key", Soon()); });
  const std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n" + std::string(64, 'x');
  ASSERT_TRUE(WriteAllFd(p.c, junk.data(), junk.size(), Soon()).ok());
  auto s = sf.get();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, errc::kBadRequest);
}

TEST(HandshakeTest, StalledPeerTimesOut) {
  Pair p;
  const auto t0 = std::chrono::steady_clock::now();
  auto s = RunServerHandshake(p.s, "key", t0 + std::chrono::milliseconds(200));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, errc::kPeerUnreachable);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
}

// The header of a data frame claiming 16 MiB, sent where the hello belongs. Only the
// header is ever written: a server that waited for the payload would sit until its
// deadline.
std::string HugeDataHeader() {
  FrameHeader h;
  h.type = FrameType::kData;
  h.length = wire::kMaxDataLength;
  h.payload_len = wire::kMaxDataLength;
  uint8_t raw[wire::kHeaderSize];
  EncodeHeaderWithPayloadHash(h, 0, raw);  // the checksum does not matter: never reached
  return std::string(reinterpret_cast<char*>(raw), sizeof raw);
}

// Waits for a handshake running in `f`; if it is still blocked after `limit`, shuts
// the socket down so it returns (and the test fails on the elapsed time instead of
// hanging).
Result<HandshakeResult> GetOrUnblock(std::future<Result<HandshakeResult>>& f, int fd,
                                     std::chrono::seconds limit) {
  if (f.wait_for(limit) != std::future_status::ready) ::shutdown(fd, SHUT_RDWR);
  return f.get();
}

// Before authentication the server reads nothing but handshake frames; a data header
// announcing 16 MiB is refused from its 48 bytes, at once, without allocating the
// payload (64 such connections used to pin 1 GiB for the handshake timeout).
TEST(HandshakeTest, DataFrameBeforeAuthIsRefusedFromItsHeader) {
  Pair p;
  const auto t0 = std::chrono::steady_clock::now();
  g_largest_alloc = 0;
  g_track_allocs = true;
  auto sf = std::async(std::launch::async,
                       [&] { return RunServerHandshake(p.s, "key", t0 + std::chrono::seconds(20)); });
  const std::string hdr = HugeDataHeader();
  ASSERT_TRUE(WriteAllFd(p.c, hdr.data(), hdr.size(), Soon()).ok());
  auto s = GetOrUnblock(sf, p.s, std::chrono::seconds(10));
  g_track_allocs = false;
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, errc::kBadRequest) << s.error().message;
  EXPECT_NE(s.error().message.find("data"), std::string::npos) << s.error().message;
  EXPECT_LT(elapsed, std::chrono::seconds(5));  // generous: it needs no wait at all
  EXPECT_LT(g_largest_alloc.load(), size_t{1} << 20) << "the announced payload was allocated";
  // The peer is told why before the connection ends.
  auto reply = ReadFrameFd(p.c, Soon());
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  ASSERT_EQ(reply.value().header.type, FrameType::kError);
  const Error e = DecodeErrorPayload(reply.value().payload.data(), reply.value().payload.size());
  EXPECT_EQ(e.code, errc::kBadRequest) << e.message;
}

// The same refusal for an allowed handshake type whose payload exceeds the handshake's
// own limit: an error frame is tiny during the handshake, not the 64 KiB of wire.h.
TEST(HandshakeTest, LargeErrorFrameBeforeAuthIsRefusedFromItsHeader) {
  Pair p;
  const auto t0 = std::chrono::steady_clock::now();
  auto sf = std::async(std::launch::async,
                       [&] { return RunServerHandshake(p.s, "key", t0 + std::chrono::seconds(20)); });
  FrameHeader h;
  h.type = FrameType::kError;
  h.payload_len = wire::kMaxErrorPayload;
  uint8_t raw[wire::kHeaderSize];
  EncodeHeaderWithPayloadHash(h, 0, raw);
  ASSERT_TRUE(WriteAllFd(p.c, raw, sizeof raw, Soon()).ok());
  auto s = GetOrUnblock(sf, p.s, std::chrono::seconds(10));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, errc::kTooLarge) << s.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

// A hostile server gets the same treatment from the client: a data header in place of
// the challenge ends the handshake at once.
TEST(HandshakeTest, ClientRefusesDataFrameInPlaceOfChallenge) {
  Pair p;
  const auto t0 = std::chrono::steady_clock::now();
  g_largest_alloc = 0;
  g_track_allocs = true;
  auto cf = std::async(std::launch::async,
                       [&] { return RunClientHandshake(p.c, "key", t0 + std::chrono::seconds(20)); });
  ASSERT_TRUE(ReadFrameFd(p.s, Soon()).ok());  // the client's hello
  const std::string hdr = HugeDataHeader();
  ASSERT_TRUE(WriteAllFd(p.s, hdr.data(), hdr.size(), Soon()).ok());
  auto c = GetOrUnblock(cf, p.c, std::chrono::seconds(10));
  g_track_allocs = false;
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, errc::kBadRequest) << c.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_LT(g_largest_alloc.load(), size_t{1} << 20);
}

TEST(HandshakeTest, LoadKeyFile) {
  testing::TempDir d;
  auto write = [&](const std::string& name, const std::string& content, mode_t mode) {
    const std::string path = d / name;
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    ::fchmod(fd, mode);
    ::close(fd);
    return path;
  };
  auto ok = LoadKeyFile(write("good", "s3cret\n", 0600));
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok.value(), "s3cret");
  auto empty = LoadKeyFile(write("empty", "\n", 0600));
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.error().message.find("empty"), std::string::npos);
  auto open_mode = LoadKeyFile(write("wide", "s3cret", 0644));
  ASSERT_FALSE(open_mode.ok());
  EXPECT_NE(open_mode.error().message.find("chmod 600"), std::string::npos);
  EXPECT_FALSE(LoadKeyFile(d / "missing").ok());
  EXPECT_FALSE(LoadKeyFile(d.path()).ok());
}

}  // namespace
}  // namespace migratefs::net
