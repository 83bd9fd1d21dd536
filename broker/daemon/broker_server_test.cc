// The broker's sockets and its control-socket client, over real sockets: request
// handling, authentication on TCP, the local socket, and Alg. 1 driving a scripted
// JSON-lines migratefs.
#include "broker/daemon/broker_server.h"

#include <gtest/gtest.h>

#include "broker/daemon/fake_control.h"
#include "broker/daemon/test_util.h"

namespace migratefs::broker {
namespace {

using nlohmann::json;
using testing::FakeControlClient;
using testing::FakeControlServer;
using testing::FakeMigrations;

class NoPeers : public PeerSender {
 public:
  void Send(const std::string&, json) override {}
};

class BrokerServerTest : public ::testing::Test {
 protected:
  BrokerServerTest() {
    config_.host = "a";
    config_.policy.period_s = 1;
    config_.key = "0123456789abcdef0123";
    config_.listen = "127.0.0.1:0";
    config_.socket = dir_.path() + "/broker.sock";
  }

  void Make(ControlClient* control) {
    BrokerDeps deps;
    deps.control = control;
    deps.peers = &peers_;
    deps.now = [this] { return now_; };
    deps.run_command = [](const std::string&) { return CommandOutcome{0, false, ""}; };
    deps.inline_completion = true;
    broker_ = std::make_unique<Broker>(config_, deps);
    verifier_ = std::make_unique<MessageVerifier>(config_.key, 30);
    auto server = BrokerServer::Start(config_, broker_.get(), verifier_.get(), [this] { return now_; });
    ASSERT_TRUE(server) << server.error().message;
    server_ = std::move(server.value());
    tcp_ = "127.0.0.1:" + std::to_string(server_->tcp_port());
  }

  json Ask(const std::string& address, const std::string& line) {
    auto answer = RoundTrip(address, line, Millis(3000));
    EXPECT_TRUE(answer) << answer.error().message;
    return answer ? json::parse(answer.value()) : json();
  }

  json SubmitBody(const std::string& vm) {
    return {{"op", "submit"},
            {"task", {{"vm", vm}, {"images", {vm + ".img"}}, {"source", "a"}, {"target", "b"},
                      {"target_address", "10.78.0.2:7200"}, {"deadline", now_ + 1000},
                      {"path", {"a-s1"}}}}};
  }

  testing::ScratchDir dir_;
  double now_ = 1e9;
  BrokerConfig config_;
  NoPeers peers_;
  FakeMigrations migrations_{[this] { return now_; }};
  FakeControlClient control_{&migrations_};
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<MessageVerifier> verifier_;
  std::unique_ptr<BrokerServer> server_;
  std::string tcp_;
};

TEST_F(BrokerServerTest, HandlesEveryOp) {
  Make(&control_);
  json a = HandleRequest(*broker_, SubmitBody("vm1"), "", now_);
  ASSERT_EQ(a["ok"], true) << a.dump();
  EXPECT_EQ(a["id"], "m1");
  a = HandleRequest(*broker_, {{"op", "task_status"}, {"vm", "vm1"}}, "", now_);
  EXPECT_EQ(a["task"]["state"], "running");
  a = HandleRequest(*broker_, {{"op", "sla_failure"}, {"link", "a-s1"}, {"for_s", 5}}, "", now_);
  EXPECT_EQ(a["ok"], true);
  a = HandleRequest(*broker_, {{"op", "status"}}, "", now_);
  EXPECT_EQ(a["host"], "a");
  EXPECT_EQ(a["saturated_sections"], json({"a-s1"}));
  EXPECT_DOUBLE_EQ(a["sla_failures"]["a-s1"].get<double>(), now_ + 5);
  a = HandleRequest(*broker_, {{"op", "release_bandwidth"}, {"sections", {"a-s1"}}, {"task", "x"}},
                    "b", now_);
  EXPECT_EQ(a["ok"], true);
  a = HandleRequest(*broker_, {{"op", "cancel"}, {"vm", "vm1"}}, "", now_);
  EXPECT_EQ(a["ok"], true);

  struct Bad {
    json request;
    const char* code;
    const char* mentions;
  };
  for (const Bad& bad : {Bad{{{"op", "fly"}}, errc::kUnknownOp, "fly"},
                         Bad{{{"nop", 1}}, errc::kBadRequest, "\"op\""},
                         Bad{{{"op", "submit"}}, errc::kBadRequest, "\"task\""},
                         Bad{{{"op", "submit"}, {"task", {{"vm", "x"}}}}, errc::kBadRequest, "task."},
                         Bad{{{"op", "sla_failure"}, {"link", "s"}}, errc::kBadRequest, "\"until\""},
                         Bad{{{"op", "sla_failure"}, {"until", 5}}, errc::kBadRequest, "\"link\""},
                         Bad{{{"op", "task_status"}, {"vm", "zz"}}, errc::kUnknownId, "zz"},
                         Bad{{{"op", "release_bandwidth"}, {"sections", "s"}}, errc::kBadRequest,
                             "\"sections\""}}) {
    json answer = HandleRequest(*broker_, bad.request, "", now_);
    EXPECT_EQ(answer["ok"], false) << bad.request.dump();
    EXPECT_EQ(answer["error"]["code"], bad.code) << answer.dump();
    EXPECT_NE(answer["error"]["message"].get<std::string>().find(bad.mentions), std::string::npos)
        << answer.dump();
  }
}

TEST_F(BrokerServerTest, RateReportsAndQueuedSubmissions) {
  config_.max_parallel = 1;
  Make(&control_);
  json report = {{"op", "rate_report"},
                 {"section", "s1-core"},
                 {"tasks", {{{"vm", "vm3"}, {"bytes_left", 9e8}, {"dirty_kbps", 10240}, {"net_kbps", 40000}}}}};
  EXPECT_EQ(HandleRequest(*broker_, report, "b", now_)["ok"], true);
  json local = HandleRequest(*broker_, report, "", now_);  // only from an authenticated broker
  EXPECT_EQ(local["ok"], false);
  json bad = report;
  bad["tasks"][0]["bytes_left"] = "lots";
  json answer = HandleRequest(*broker_, bad, "b", now_);
  EXPECT_EQ(answer["ok"], false);
  EXPECT_NE(answer["error"]["message"].get<std::string>().find("\"tasks\""), std::string::npos);
  json capped = report;
  capped["tasks"][0]["ceiling_kbps"] = 20000;
  EXPECT_EQ(HandleRequest(*broker_, capped, "b", now_)["ok"], true);
  capped["tasks"][0]["ceiling_kbps"] = -5;
  answer = HandleRequest(*broker_, capped, "b", now_);
  EXPECT_EQ(answer["ok"], false);
  EXPECT_NE(answer["error"]["message"].get<std::string>().find("ceiling_kbps"), std::string::npos) << answer.dump();
  EXPECT_EQ(HandleRequest(*broker_, SubmitBody("vm1"), "", now_)["id"], "m1");
  json queued = HandleRequest(*broker_, SubmitBody("vm2"), "", now_);
  EXPECT_EQ(queued["ok"], true);
  EXPECT_EQ(queued["queued"], true);
  EXPECT_EQ(queued["id"], "");
}

TEST_F(BrokerServerTest, TcpTakesOnlyAuthenticatedFreshMessages) {
  Make(&control_);
  json plain = Ask(tcp_, json{{"op", "status"}}.dump());
  EXPECT_EQ(plain["error"]["code"], errc::kAuthFailed);

  std::string sealed = SealMessage(config_.key, SubmitBody("vm1"), "scheduler", now_);
  json ok = Ask(tcp_, sealed);
  EXPECT_EQ(ok["ok"], true) << ok.dump();
  json replayed = Ask(tcp_, sealed);
  EXPECT_EQ(replayed["error"]["code"], errc::kAuthFailed);
  EXPECT_EQ(broker_->StatusReport()["tasks"].size(), 1u);  // the replay changed nothing

  json wrong_key = Ask(tcp_, SealMessage("a-different-key-of-16", {{"op", "status"}}, "x", now_));
  EXPECT_EQ(wrong_key["error"]["code"], errc::kAuthFailed);
  json stale = Ask(tcp_, SealMessage(config_.key, {{"op", "status"}}, "x", now_ - 3600));
  EXPECT_EQ(stale["error"]["code"], errc::kAuthFailed);
  json garbage = Ask(tcp_, "{not json");
  EXPECT_EQ(garbage["error"]["code"], errc::kBadRequest);
}

TEST_F(BrokerServerTest, LocalSocketTakesPlainRequests) {
  Make(&control_);
  json a = Ask(config_.socket, json{{"op", "sla_failure"}, {"link", "a-s1"}, {"until", now_ + 9}}.dump());
  EXPECT_EQ(a["ok"], true) << a.dump();
  json status = Ask(config_.socket, "{\"op\":\"status\"}");
  EXPECT_EQ(status["saturated_sections"], json({"a-s1"}));
  // Several requests on one connection.
  auto fd = ConnectUnix(config_.socket, Millis(1000));
  ASSERT_TRUE(fd);
  LineConn conn(std::move(fd.value()));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(conn.WriteLine("{\"op\":\"status\"}", Millis(1000)));
    auto line = conn.ReadLine(Millis(2000));
    ASSERT_TRUE(line && line.value());
    EXPECT_EQ(json::parse(*line.value())["ok"], true);
  }
  server_->Stop();  // ends the open connection promptly
}

TEST_F(BrokerServerTest, SocketClientDrivesAScriptedMigratefs) {
  std::string control_path = dir_.path() + "/control.sock";
  auto fake = FakeControlServer::Start(control_path, &migrations_);
  ASSERT_TRUE(fake) << fake.error().message;
  auto client = NewSocketControlClient(control_path, Millis(2000), Millis(5000));
  Make(client.get());
  migrations_.SimulateNext({1e9, 10000, 0, 1});
  json a = Ask(config_.socket, SubmitBody("vm1").dump());
  ASSERT_EQ(a["ok"], true) << a.dump();
  now_ += 1;
  broker_->Tick({});
  broker_->ReportSlaFailure("a-s1", now_ + 10);
  now_ += 1;
  broker_->Tick({});
  EXPECT_EQ(migrations_.network_limit("m1"), 5000u);
  std::vector<json> sent;
  for (const std::string& line : fake.value()->lines()) sent.push_back(json::parse(line));
  ASSERT_GE(sent.size(), 4u);
  EXPECT_EQ(sent[0], json({{"op", "start"}, {"images", {"vm1.img"}}, {"target", "10.78.0.2:7200"}}));
  EXPECT_EQ(sent[1], json({{"op", "query_completion"}, {"id", "m1"}}));
  EXPECT_EQ(sent[2], json({{"op", "query_progress"}, {"id", "m1"}, {"what", "network"}}));
  EXPECT_EQ(sent[3], json({{"op", "query_progress"}, {"id", "m1"}, {"what", "disk"}}));
  EXPECT_EQ(sent.back(), json({{"op", "set_network_limit"}, {"id", "m1"}, {"kbps", 5000}}));
  // The daemon's errors come back with their code and message.
  auto unknown = client->SetDiskLimit("m9", 5);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, errc::kUnknownId);
  // A dead daemon is peer_unreachable, quickly.
  fake.value().reset();
  auto dead = client->QueryCompletion("m1");
  ASSERT_FALSE(dead);
  EXPECT_EQ(dead.error().code, errc::kPeerUnreachable);
}

}  // namespace
}  // namespace migratefs::broker
