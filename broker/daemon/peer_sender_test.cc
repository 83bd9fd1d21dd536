#include "broker/daemon/peer_sender.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <thread>

#include "broker/daemon/line_socket.h"
#include "broker/daemon/peer_auth.h"

namespace migratefs::broker {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double WallNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

TEST(AsyncPeerSender, DeliversSealedMessagesAndSurvivesDeadAndSilentPeers) {
  auto live = ListenTcp("127.0.0.1:0");
  auto silent = ListenTcp("127.0.0.1:0");  // accepts into its backlog, never answers
  auto dead = ListenTcp("127.0.0.1:0");
  ASSERT_TRUE(live && silent && dead);
  auto address = [](const Fd& fd) { return "127.0.0.1:" + std::to_string(BoundPort(fd.get())); };
  BrokerConfig config;
  config.host = "a";
  config.key = "0123456789abcdef0123";
  config.peer_timeout_s = 0.3;
  config.peers = {{"live", address(live.value())}, {"silent", address(silent.value())},
                  {"dead", address(dead.value())}};
  dead.value().reset();  // nobody listens there any more

  json received;
  std::thread server([&] {
    Fd fd(::accept(live.value().get(), nullptr, nullptr));
    LineConn conn(std::move(fd));
    auto line = conn.ReadLine(Millis(5000));
    ASSERT_TRUE(line && line.value());
    MessageVerifier verifier(config.key, 30);
    auto body = verifier.Open(*line.value(), WallNow());
    ASSERT_TRUE(body) << body.error().message;
    received = body.value();
    ASSERT_TRUE(conn.WriteLine("{\"ok\":true}", Millis(1000)));
  });

  AsyncPeerSender sender(config, WallNow);
  auto start = Clock::now();
  sender.Send("silent", {{"op", "release_bandwidth"}, {"sections", {"s1"}}});
  sender.Send("dead", {{"op", "release_bandwidth"}});
  sender.Send("nobody", {{"op", "release_bandwidth"}});  // not in [[peer]]: logged, skipped
  sender.Send("live", {{"op", "release_bandwidth"}, {"sections", {"s1"}}, {"task", "vm1"}});
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(100)) << "Send must not block";
  sender.Flush();
  server.join();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
  EXPECT_EQ(received["op"], "release_bandwidth");
  EXPECT_EQ(received["from"], "a");
  EXPECT_EQ(received["task"], "vm1");
}

TEST(AsyncPeerSender, QueueIsBounded) {
  BrokerConfig config;
  config.host = "a";
  config.key = "0123456789abcdef0123";
  config.peer_timeout_s = 0.05;
  config.peers = {{"dead", "127.0.0.1:1"}};
  AsyncPeerSender sender(config, WallNow);
  for (size_t i = 0; i < 3 * AsyncPeerSender::kMaxQueued; ++i) sender.Send("dead", {{"op", "x"}});
  sender.Flush();  // returns: at most kMaxQueued were kept, each refused at once
}

}  // namespace
}  // namespace migratefs::broker
