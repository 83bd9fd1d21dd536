#include "net/socket_marking.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fcntl.h>

#include <cstdio>

#include <gtest/gtest.h>

#include "net/peer/peer_client.h"
#include "net/peer/peer_server.h"
#include "net/peer/peer_test_util.h"

namespace migratefs::net {
namespace {

TEST(ParseDscp, NamesMapToTheirCodePoints) {
  const std::pair<const char*, int> cases[] = {
      {"CS0", 0},   {"CS1", 8},   {"CS2", 16},  {"CS3", 24},  {"CS4", 32},  {"CS5", 40},  {"CS6", 48},
      {"CS7", 56},  {"AF11", 10}, {"AF12", 12}, {"AF13", 14}, {"AF21", 18}, {"AF22", 20}, {"AF23", 22},
      {"AF31", 26}, {"AF32", 28}, {"AF33", 30}, {"AF41", 34}, {"AF42", 36}, {"AF43", 38}, {"EF", 46}};
  for (const auto& [name, value] : cases) {
    auto parsed = ParseDscp(name);
    ASSERT_TRUE(parsed.ok()) << name << ": " << parsed.error().message;
    EXPECT_EQ(parsed.value(), value) << name;
    EXPECT_EQ(DscpName(uint8_t(value)), name);
  }
}

TEST(ParseDscp, CaseInsensitiveAndNumbers) {
  EXPECT_EQ(ParseDscp("af41").value(), 34);
  EXPECT_EQ(ParseDscp("Ef").value(), 46);
  EXPECT_EQ(ParseDscp("0").value(), 0);
  EXPECT_EQ(ParseDscp("63").value(), 63);
  EXPECT_EQ(ParseDscp("46").value(), 46);
  EXPECT_EQ(DscpName(13), "13");
  EXPECT_EQ(DscpName(63), "63");
  EXPECT_EQ(DscpName(0), "CS0");
  EXPECT_EQ(ParseDscp("BE").value(), 0);
  EXPECT_EQ(ParseDscp("df").value(), 0);
  EXPECT_EQ(ParseDscp("LE").value(), 1);
  EXPECT_EQ(ParseDscp("VA").value(), 44);
  EXPECT_EQ(DscpName(1), "LE");
  EXPECT_EQ(DscpName(44), "VA");
}

TEST(ParseDscp, RejectsEverythingElse) {
  for (const char* bad : {"", "64", "100", "-1", "+5", " 5", "5 ", "AF14", "AF51", "AF10", "AF1", "AF411", "CS8",
                          "CS", "EFF", "XX", "0x10", "af4 1", "99999999999999999999999"}) {
    auto parsed = ParseDscp(bad);
    ASSERT_FALSE(parsed.ok()) << "accepted \"" << bad << "\"";
    EXPECT_EQ(parsed.error().code, errc::kInvalidArgument);
    EXPECT_NE(parsed.error().message.find("AF11"), std::string::npos) << parsed.error().message;
  }
}

TEST(ParseSocketPriority, DecimalAndHex) {
  EXPECT_EQ(ParseSocketPriority("0").value(), 0u);
  EXPECT_EQ(ParseSocketPriority("6").value(), 6u);
  EXPECT_EQ(ParseSocketPriority("0x10010").value(), 0x10010u);
  EXPECT_EQ(ParseSocketPriority("4294967295").value(), 4294967295u);
  EXPECT_EQ(ParseSocketPriority("0XfFfF").value(), 0xffffu);
  for (const char* bad : {"", "-1", "4294967296", "0x100000000", "0x", "6k", "1:10", " 6", "abc"}) {
    auto parsed = ParseSocketPriority(bad);
    ASSERT_FALSE(parsed.ok()) << "accepted \"" << bad << "\"";
    EXPECT_EQ(parsed.error().code, errc::kInvalidArgument);
  }
}

TEST(SocketMarking, OverrideTakesOnlyWhatIsSet) {
  SocketMarking daemon{uint8_t(10), uint32_t(2)};
  EXPECT_EQ(daemon.OverriddenBy({}), daemon);
  EXPECT_EQ(daemon.OverriddenBy({uint8_t(34), std::nullopt}), (SocketMarking{uint8_t(34), uint32_t(2)}));
  EXPECT_EQ(daemon.OverriddenBy({std::nullopt, uint32_t(6)}), (SocketMarking{uint8_t(10), uint32_t(6)}));
  EXPECT_EQ(DescribeMarking({}), "unmarked");
  EXPECT_EQ(DescribeMarking({uint8_t(34), uint32_t(6)}), "dscp AF41 (34), so_priority 6");
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// The point of the ordering rule: TOS set after the priority would have reset it.
TEST(ApplySocketMarking, SetsTosThenPriorityOnIpv4) {
  Fd s(socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_GE(s.get(), 0);
  ASSERT_TRUE(ApplySocketMarking(s.get(), {uint8_t(34), uint32_t(5)}).ok());
  auto got = ReadSocketMarking(s.get());
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got.value().dscp, uint8_t(34));
  EXPECT_EQ(got.value().priority, uint32_t(5));

  // Demonstrates the kernel behaviour the order guards against.
  int prio = 3, tos = 46 << 2;
  ASSERT_EQ(setsockopt(s.get(), SOL_SOCKET, SO_PRIORITY, &prio, sizeof prio), 0);
  ASSERT_EQ(setsockopt(s.get(), IPPROTO_IP, IP_TOS, &tos, sizeof tos), 0);
  EXPECT_NE(ReadSocketMarking(s.get()).value().priority, uint32_t(3)) << "IP_TOS no longer resets SO_PRIORITY?";
}

TEST(ApplySocketMarking, UnsetFieldsAreLeftAlone) {
  Fd s(socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_GE(s.get(), 0);
  ASSERT_TRUE(ApplySocketMarking(s.get(), {uint8_t(8), std::nullopt}).ok());
  ASSERT_TRUE(ApplySocketMarking(s.get(), {std::nullopt, uint32_t(4)}).ok());
  EXPECT_EQ(ReadSocketMarking(s.get()).value(), (SocketMarking{uint8_t(8), uint32_t(4)}));
  ASSERT_TRUE(ApplySocketMarking(s.get(), {}).ok());
  EXPECT_EQ(ReadSocketMarking(s.get()).value(), (SocketMarking{uint8_t(8), uint32_t(4)}));
}

TEST(ApplySocketMarking, Ipv6UsesTheTrafficClass) {
  Fd s(socket(AF_INET6, SOCK_STREAM, 0));
  if (s.get() < 0) GTEST_SKIP() << "no IPv6 here";
  ASSERT_TRUE(ApplySocketMarking(s.get(), {uint8_t(46), uint32_t(6)}).ok());
  auto got = ReadSocketMarking(s.get());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got.value().dscp, uint8_t(46));
  EXPECT_EQ(got.value().priority, uint32_t(6));
  // The IPv4 TOS of a dual-stack socket is set too (for v4-mapped peers).
  int tos = 0;
  socklen_t len = sizeof tos;
  ASSERT_EQ(getsockopt(s.get(), IPPROTO_IP, IP_TOS, &tos, &len), 0);
  EXPECT_EQ(tos >> 2, 46);
}

// A connected pair on loopback: the marking survives connect and shows on the peer's
// packets (checked by the netns test); here only that it applies after connect.
TEST(ApplySocketMarking, WorksOnAConnectedSocket) {
  Fd listener(socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_GE(listener.get(), 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener.get(), 1), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  Fd client(socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_EQ(connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_TRUE(ApplySocketMarking(client.get(), {uint8_t(26), uint32_t(1)}).ok());
  EXPECT_EQ(ReadSocketMarking(client.get()).value(), (SocketMarking{uint8_t(26), uint32_t(1)}));
}

TEST(ApplySocketMarking, RejectsWhatIsNotAnIpSocket) {
  Fd s(socket(AF_UNIX, SOCK_STREAM, 0));
  ASSERT_GE(s.get(), 0);
  auto st = ApplySocketMarking(s.get(), {uint8_t(8), std::nullopt});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, errc::kInvalidArgument);
  Fd t(socket(AF_INET, SOCK_STREAM, 0));
  auto over = ApplySocketMarking(t.get(), {uint8_t(64), std::nullopt});
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code, errc::kInvalidArgument);
}

// `ss -tn --tos` lines of established TCP sockets with this local (sport) or remote
// (dport) port.
std::string SsTos(const char* which, uint16_t port) {
  std::string cmd = std::string("ss -tnH --tos state established '( ") + which + " = :" + std::to_string(port) +
                    " )' 2>&1";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[1024];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

// The wiring: a PeerClient marks its connection with its options' marking, a
// PeerServer what it sends back with its own; over IPv4 and IPv6.
TEST(PeerMarking, EachEndCarriesItsOwnMarking) {
  if (std::system("ss -V >/dev/null 2>&1") != 0) GTEST_SKIP() << "ss (iproute2) missing";
  for (const bool v6 : {false, true}) {
    SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
    testing::TempDir dir;
    int dirfd = ::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(dirfd, 0);
    testing::RecordingObserver observer;
    PeerServerOptions so;
    so.listen = v6 ? "[::1]:0" : "127.0.0.1:0";
    so.insecure = true;
    so.src_dirfd = dirfd;
    so.marking = {uint8_t(16), uint32_t(2)};  // CS2: TOS byte 0x40
    auto server = PeerServer::Start(so, &observer);
    if (!server.ok() && v6) {
      ::close(dirfd);
      GTEST_SKIP() << "no IPv6 loopback: " << server.error().message;
    }
    ASSERT_TRUE(server.ok()) << server.error().message;
    const uint16_t port = server.value()->port();
    PeerClientOptions co;
    co.target = (v6 ? "[::1]:" : "127.0.0.1:") + std::to_string(port);
    co.marking = {uint8_t(34), uint32_t(5)};  // AF41: 0x88
    auto client = PeerClient::Connect(co);
    ASSERT_TRUE(client.ok()) << client.error().message;
    const std::string field = v6 ? "tclass:" : "tos:";
    const std::string source_side = SsTos("dport", port), target_side = SsTos("sport", port);
    EXPECT_NE(source_side.find(field + "0x88"), std::string::npos) << source_side;
    EXPECT_NE(target_side.find(field + "0x40"), std::string::npos) << target_side;
    client.value().reset();
    server.value().reset();
    ::close(dirfd);
  }
}

}  // namespace
}  // namespace migratefs::net
