// Seed 000's allocation between brokers that share a saturated section (issue 11,
// item 2): reports go to the sharing brokers, the rates follow once every broker of
// the section has reported, Alg. 2 alone otherwise.
#include <gtest/gtest.h>

#include "broker/daemon/broker.h"
#include "broker/daemon/fake_control.h"

namespace migratefs::broker {
namespace {

using nlohmann::json;
using testing::FakeControlClient;
using testing::FakeMigrations;

class RecordingPeers : public PeerSender {
 public:
  void Send(const std::string& host, json body) override { sent.emplace_back(host, std::move(body)); }
  std::vector<std::pair<std::string, json>> sent;
};

class BrokerAllocationTest : public ::testing::Test {
 protected:
  void Make() {
    config_.host = "a";
    config_.policy.period_s = 1;
    config_.policy.min_network_bps = 1e5;
    BrokerDeps deps;
    deps.control = &control_;
    deps.peers = &peers_;
    deps.now = [this] { return now_; };
    deps.run_command = [](const std::string&) { return CommandOutcome{0, false, ""}; };
    deps.inline_completion = true;
    broker_ = std::make_unique<Broker>(config_, deps);
  }
  // Seed 000's 3-VM row: vm1 and vm2 here, vm3 on broker b; each of ours moves
  // 42.5 MB/s and dirties 10.24 MB/s; after the first period exactly V is left.
  void SubmitTwo() {
    for (auto [vm, v] : {std::pair<const char*, double>{"vm1", 500.02e6}, {"vm2", 479.92e6}}) {
      TaskSpec spec;
      spec.vm = vm;
      spec.images = {std::string(vm) + ".img"};
      spec.source = "a";
      spec.target = "c";
      spec.target_address = "10.0.0.3:7200";
      spec.deadline_s = now_ + 100000;
      spec.path = {"a-s1", "s1-core", "core-c"};
      spec.sharing = {{"s1-core", {"b"}}};
      migrations_.SimulateNext({v + 42.5e6 - 10.24e6, 42500, 10240, 1});
      ASSERT_TRUE(broker_->Submit(spec));
    }
  }
  void ReportFromB() {
    broker_->ReceiveRateReport("b", "s1-core", {{"", "vm3", 904.72e6, 10.24e6, 40e6, false}});
  }
  uint64_t Limit(const std::string& id) { return migrations_.network_limit(id); }
  int Reports() {
    int n = 0;
    for (const auto& m : peers_.sent) n += m.first == "b" && m.second["op"] == kRateReportOp;
    return n;
  }

  double now_ = 1000;
  FakeMigrations migrations_{[this] { return now_; }};
  FakeControlClient control_{&migrations_};
  RecordingPeers peers_;
  BrokerConfig config_;
  std::unique_ptr<Broker> broker_;
};

TEST_F(BrokerAllocationTest, EveryBrokerReportedSeed000RatesReplaceHalving) {
  Make();
  SubmitTwo();
  ReportFromB();
  ASSERT_TRUE(broker_->ReportSlaFailure("s1-core", now_ + 100));
  now_ += 1;
  broker_->Tick({});
  EXPECT_EQ(Reports(), 1);
  const json& report = peers_.sent.back().second;
  EXPECT_EQ(report["section"], "s1-core");
  ASSERT_EQ(report["tasks"].size(), 2u);
  EXPECT_NEAR(report["tasks"][0]["bytes_left"].get<double>(), 500.02e6, 1e4);
  // 125 MB/s among the three, as in seed 000's table (38.48, 37.88, 48.62 MB/s).
  EXPECT_NEAR(Limit("m1") / 1000.0, 38.48, 0.5);
  EXPECT_NEAR(Limit("m2") / 1000.0, 37.88, 0.5);
  EXPECT_EQ(broker_->TaskReport("vm1").value()["allocation_section"], "s1-core");
}

TEST_F(BrokerAllocationTest, UnreachablePeerMeansAlg2Alone) {
  Make();
  SubmitTwo();
  ASSERT_TRUE(broker_->ReportSlaFailure("s1-core", now_ + 100));
  now_ += 1;
  broker_->Tick({});  // b never reported: halve
  EXPECT_EQ(Reports(), 1);  // ours still goes out
  EXPECT_EQ(Limit("m1"), 21250u);
  EXPECT_EQ(Limit("m2"), 21250u);
  EXPECT_EQ(broker_->TaskReport("vm1").value()["allocation_section"], "");
  // A report older than two periods no longer counts.
  ReportFromB();
  now_ += 2.5;
  broker_->Tick({});
  EXPECT_EQ(Limit("m1"), 10625u);  // halved again
}

TEST_F(BrokerAllocationTest, SwitchedOffByConfig) {
  config_.rate_allocation = false;
  Make();
  SubmitTwo();
  ReportFromB();
  ASSERT_TRUE(broker_->ReportSlaFailure("s1-core", now_ + 100));
  now_ += 1;
  broker_->Tick({});
  EXPECT_EQ(Reports(), 0);
  EXPECT_EQ(Limit("m1"), 21250u);
}

}  // namespace
}  // namespace migratefs::broker
