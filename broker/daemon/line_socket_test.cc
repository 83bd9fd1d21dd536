#include "broker/daemon/line_socket.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <thread>

#include "broker/daemon/test_util.h"

namespace migratefs::broker {
namespace {

TEST(ParseEndpoint, AcceptsHostPortOnly) {
  auto e = ParseEndpoint("10.78.0.1:7100");
  ASSERT_TRUE(e);
  EXPECT_EQ(e.value().host, "10.78.0.1");
  EXPECT_EQ(e.value().port, 7100);
  EXPECT_TRUE(ParseEndpoint("host-b:1"));
  for (const char* bad : {"", "host", ":7", "h:", "h:0x1", "h:70000", "a b:1", "h:1:2x"}) {
    EXPECT_FALSE(ParseEndpoint(bad)) << bad;
  }
}

TEST(LineSocket, RoundTripOverUnixAndTcp) {
  testing::ScratchDir dir;
  std::string path = dir.path() + "/s.sock";
  auto unix_listener = ListenUnix(path);
  ASSERT_TRUE(unix_listener) << unix_listener.error().message;
  auto tcp_listener = ListenTcp("127.0.0.1:0");
  ASSERT_TRUE(tcp_listener);
  int port = BoundPort(tcp_listener.value().get());
  auto echo_once = [](int listen_fd) {
    Fd fd(::accept(listen_fd, nullptr, nullptr));
    LineConn conn(std::move(fd));
    auto line = conn.ReadLine(Millis(2000));
    ASSERT_TRUE(line && line.value());
    ASSERT_TRUE(conn.WriteLine("echo:" + *line.value(), Millis(2000)));
  };
  std::thread a(echo_once, unix_listener.value().get());
  auto answer = RoundTrip(path, "hello", Millis(2000));
  a.join();
  ASSERT_TRUE(answer) << answer.error().message;
  EXPECT_EQ(answer.value(), "echo:hello");
  std::thread b(echo_once, tcp_listener.value().get());
  answer = RoundTrip("127.0.0.1:" + std::to_string(port), "hi\r", Millis(2000));
  b.join();
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer.value(), "echo:hi");
}

TEST(LineSocket, SilentServerTimesOutAndDeadOnesAreUnreachable) {
  auto listener = ListenTcp("127.0.0.1:0");  // accepts (backlog) but never answers
  ASSERT_TRUE(listener);
  int port = BoundPort(listener.value().get());
  auto start = std::chrono::steady_clock::now();
  auto answer = RoundTrip("127.0.0.1:" + std::to_string(port), "x", Millis(300));
  ASSERT_FALSE(answer);
  EXPECT_EQ(answer.error().code, errc::kPeerUnreachable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  listener.value().reset();
  EXPECT_FALSE(RoundTrip("127.0.0.1:" + std::to_string(port), "x", Millis(300)));
  EXPECT_FALSE(RoundTrip("/nonexistent/sock", "x", Millis(300)));
}

TEST(LineSocket, UnixListenerIsPrivateAndRefusesALiveOne) {
  testing::ScratchDir dir;
  std::string path = dir.path() + "/s.sock";
  auto first = ListenUnix(path);
  ASSERT_TRUE(first);
  struct stat st{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto second = ListenUnix(path);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, errc::kBusy);
  first.value().reset();  // stale socket file left behind: replaced
  EXPECT_TRUE(ListenUnix(path));
}

}  // namespace
}  // namespace migratefs::broker
