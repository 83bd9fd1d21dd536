// Packet marking per class: the config table, the DSCP names, and the exact start
// request a socket-connected broker sends (fields absent when not configured).
#include "broker/daemon/marking.h"

#include <gtest/gtest.h>

#include "broker/daemon/broker.h"
#include "broker/daemon/broker_config.h"
#include "broker/daemon/broker_test_fixture.h"
#include "broker/daemon/test_util.h"

namespace migratefs::broker {
namespace {

using nlohmann::json;
using policy::PriorityClass;

TEST(MarkingTest, DscpNames) {
  EXPECT_EQ(DscpCodeOf("AF41"), 34);
  EXPECT_EQ(DscpCodeOf("af11"), 10);
  EXPECT_EQ(DscpCodeOf("AF43"), 38);
  EXPECT_EQ(DscpCodeOf("EF"), 46);
  EXPECT_EQ(DscpCodeOf("CS6"), 48);
  EXPECT_EQ(DscpCodeOf("DF"), 0);
  EXPECT_EQ(DscpCodeOf("LE"), 1);  // lower effort (RFC 8622): a fit for class low
  EXPECT_FALSE(DscpCodeOf("AF44"));
  EXPECT_FALSE(DscpCodeOf("CS8"));
  EXPECT_FALSE(DscpCodeOf(""));
}

TEST(MarkingTest, AddsOnlyWhatIsConfigured) {
  json r = {{"op", "start"}};
  AddMarking({}, &r);
  EXPECT_EQ(r, json({{"op", "start"}}));
  AddMarking({std::string("af41"), std::nullopt, 6}, &r);
  EXPECT_EQ(r, json({{"op", "start"}, {"dscp", "AF41"}, {"so_priority", 6}}));
  json n = {{"op", "start"}};
  AddMarking({std::nullopt, 10, std::nullopt}, &n);
  EXPECT_EQ(n, json({{"op", "start"}, {"dscp", 10}}));
}

constexpr const char* kBase = "host='a'\ncontrol_socket='/c'\nsocket='/s'\nperiod=1\n";

TEST(MarkingTest, ConfigTablePerClass) {
  auto c = ParseBrokerConfig(std::string(kBase) +
                                 "[marking.high]\ndscp='AF41'\nso_priority=6\n"
                                 "[marking.low]\ndscp=8\n",
                             "broker.toml");
  ASSERT_TRUE(c) << c.error().message;
  const auto& m = c.value().marking;
  ASSERT_EQ(m.count(PriorityClass::kHigh), 1u);
  EXPECT_EQ(m.at(PriorityClass::kHigh).dscp_name, "AF41");
  EXPECT_EQ(m.at(PriorityClass::kHigh).so_priority, 6);
  EXPECT_EQ(m.at(PriorityClass::kLow).dscp_code, 8);
  EXPECT_FALSE(m.at(PriorityClass::kLow).so_priority);
  EXPECT_EQ(m.count(PriorityClass::kMedium), 0u);
}

TEST(MarkingTest, ConfigErrorsNameTheField) {
  struct Case {
    const char* text;
    const char* names;
  } cases[] = {
      {"[marking.high]\ndscp='AF55'\n", "\"marking.high.dscp\""},
      {"[marking.high]\ndscp=64\n", "\"marking.high.dscp\""},
      {"[marking.high]\nso_priority=-1\n", "\"marking.high.so_priority\""},
      {"[marking.high]\ntos=3\n", "\"marking.high.tos\""},
      {"[marking.urgent]\ndscp='EF'\n", "\"marking.urgent\""},
      {"marking=3\n", "\"marking\""},
  };
  for (const Case& k : cases) {
    auto c = ParseBrokerConfig(std::string(kBase) + k.text, "broker.toml");
    ASSERT_FALSE(c) << k.text;
    EXPECT_NE(c.error().message.find(k.names), std::string::npos) << c.error().message;
  }
}

TEST(MarkingTest, StartRequestCarriesTheClassMarkingOverTheSocket) {
  testing::ScratchDir dir;
  testing::FakeMigrations migrations;
  std::string path = dir.path() + "/control.sock";
  auto server = testing::FakeControlServer::Start(path, &migrations);
  ASSERT_TRUE(server) << server.error().message;
  auto client = NewSocketControlClient(path, Millis(2000), Millis(2000));
  BrokerConfig config;
  config.host = "a";
  config.policy.period_s = 1;
  config.marking[PriorityClass::kHigh] = {std::string("AF41"), std::nullopt, 6};
  config.marking[PriorityClass::kLow] = {std::nullopt, 8, std::nullopt};
  testing::RecordingPeers peers;
  BrokerDeps deps;
  deps.control = client.get();
  deps.peers = &peers;
  deps.now = [] { return 1000.0; };
  deps.run_command = [](const std::string&) { return CommandOutcome{0, false, ""}; };
  Broker broker(config, deps);
  auto spec = [](const std::string& vm, PriorityClass c, bool important) {
    TaskSpec s = testing::TaskOfA(vm, 5000);
    s.target_address = "10.0.0.2:7200";
    s.priority = c;
    s.important = important;
    return s;
  };
  ASSERT_TRUE(broker.Submit(spec("h", PriorityClass::kHigh, false)));
  ASSERT_TRUE(broker.Submit(spec("m", PriorityClass::kMedium, false)));
  ASSERT_TRUE(broker.Submit(spec("i", PriorityClass::kLow, true)));  // important: high's marking
  ASSERT_TRUE(broker.Submit(spec("l", PriorityClass::kLow, false)));
  std::vector<json> sent;
  for (const std::string& line : server.value()->lines()) sent.push_back(json::parse(line));
  ASSERT_EQ(sent.size(), 4u);
  EXPECT_EQ(sent[0], json({{"op", "start"}, {"images", {"h.img"}}, {"target", "10.0.0.2:7200"},
                           {"dscp", "AF41"}, {"so_priority", 6}}));
  // No marking for medium: exactly today's request.
  EXPECT_EQ(sent[1], json({{"op", "start"}, {"images", {"m.img"}}, {"target", "10.0.0.2:7200"}}));
  EXPECT_EQ(sent[2]["dscp"], "AF41");
  EXPECT_EQ(sent[3], json({{"op", "start"}, {"images", {"l.img"}}, {"target", "10.0.0.2:7200"}, {"dscp", 8}}));
  EXPECT_EQ(migrations.start_marking(3).dscp_code, 8);
}

}  // namespace
}  // namespace migratefs::broker
