#include "net/handshake.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <future>
#include <thread>

#include "net/frame.h"
#include "net/peer_test_util.h"

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
