// Alg. 1 as the daemon runs it, period by period, against an in-memory migratefs
// (fake_control.h) with a fake clock: what it observes, which limits it sets and
// when, congestion sources, release requests, the completion sequence.
#include "broker/daemon/broker.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "broker/daemon/broker_test_fixture.h"

namespace migratefs::broker {
namespace {

using nlohmann::json;
using testing::SimulatedVm;

class BrokerTest : public testing::BrokerFixture {
 protected:
  BrokerTest() {
    config_.policy.danger_pct = 300;
    config_.policy.warning_pct = 400;
    config_.policy.increase_bps = 1e6;   // C = 1000 KB/s
    config_.policy.quiet_periods = 3;    // n
    config_.policy.min_disk_bps = 1e5;
    config_.hypervisor_command = "virsh migrate --live {vm} qemu+ssh://{target}/system";
    run_command_ = [this](const std::string& command) {
      hooks_.push_back(command);
      calls_at_hook_ = migrations_.calls();
      return hook_outcome_;
    };
  }
  ~BrokerTest() override { broker_.reset(); }  // before the hook's records go

  TaskSpec Spec(const std::string& vm, double deadline_in_s, bool important = false,
                std::vector<std::string> path = {"a-s1", "s1-b"}) const {
    TaskSpec spec = BrokerFixture::Spec(vm);
    spec.deadline_s = now_ + deadline_in_s;
    spec.important = important;
    spec.path = std::move(path);
    return spec;
  }

  void Period(const std::vector<LinkSample>& links = {}) {
    now_ += 1;
    broker_->Tick(links);
  }

  json Report(const std::string& vm) {
    auto r = broker_->TaskReport(vm);
    EXPECT_TRUE(r);
    return r ? r.value() : json();
  }

  std::vector<std::string> LimitCalls() {
    std::vector<std::string> out;
    for (const std::string& c : migrations_.calls()) {
      if (c.starts_with("set_")) out.push_back(c);
    }
    return out;
  }

  // 1 GB over a 10 MB/s link, no writes: 100 s of copy, far from any deadline below.
  static SimulatedVm Idle() { return {1e9, 10000, 0, 1}; }

  std::vector<std::string> hooks_;
  std::vector<std::string> calls_at_hook_;
  CommandOutcome hook_outcome_{0, false, ""};
};

TEST_F(BrokerTest, CongestionHalvesThenRecoversLinearlyThenDrops) {
  Make();
  std::string id = Submit(Spec("vm1", 10000), Idle());
  Period();  // quiet, no limit
  EXPECT_TRUE(LimitCalls().empty());
  ASSERT_TRUE(broker_->ReportSlaFailure("a-s1", now_ + 2.5));
  Period();  // backoff: 10000/2
  Period();  // backoff persists: 5000/2
  Period();  // quiet: hold 2500 (unchanged: no call)
  Period();  // +C
  Period();  // +C
  Period();  // 4th quiet period > n = 3: limit dropped
  EXPECT_EQ(LimitCalls(), (std::vector<std::string>{
                              "set_network_limit m1 5000", "set_network_limit m1 2500",
                              "set_network_limit m1 3500", "set_network_limit m1 4500",
                              "set_network_limit m1 0"}));
  json r = Report("vm1");
  EXPECT_EQ(r["backoff_periods"], 2);
  EXPECT_DOUBLE_EQ(r["network_limited_s"].get<double>(), 5);  // from the 2nd period to the 7th
  EXPECT_EQ(r["network_limit_kbps"], 0);
  EXPECT_EQ(migrations_.network_limit(id), 0u);
}

TEST_F(BrokerTest, SaturatedLinkCountersMeanBackoffForTasksOnThatSection) {
  Make();
  std::string on = Submit(Spec("on", 10000, false, {"a-s1", "s1-b"}), Idle());
  std::string off = Submit(Spec("off", 10000, false, {"a-s2", "s2-b"}), Idle());
  Period();
  LinkSample hot{"veth-a", "a-s1", 12500, 12000, 0, true, true};
  Period({hot});
  EXPECT_EQ(migrations_.network_limit(on), 5000u);
  EXPECT_EQ(migrations_.network_limit(off), 0u);
  hot.section = "";  // a link without a section is on every path
  Period({hot});
  EXPECT_EQ(migrations_.network_limit(on), 2500u);
  EXPECT_EQ(migrations_.network_limit(off), 5000u);
}

TEST_F(BrokerTest, HeavyWriterGetsADiskLimitAndMeetsTheDeadline) {
  Make();
  // 100 MB, copy at 10 MB/s, VM dirties 8 MB/s: drains at 2 MB/s = 50 s. Deadline 40 s.
  SimulatedVm writer{100e6, 10000, 8000, 1};
  std::string id = Submit(Spec("db", 40), writer);
  for (int i = 0; i < 60 && Report("db")["state"] == "running"; ++i) Period();
  json r = Report("db");
  EXPECT_EQ(r["state"], "finished") << r.dump(1);
  EXPECT_EQ(r["met_deadline"], true) << r.dump(1);
  EXPECT_LE(r["duration_s"].get<double>(), 40);
  EXPECT_GT(r["disk_limited_s"].get<double>(), 0);
  auto calls = LimitCalls();
  ASSERT_FALSE(calls.empty());
  EXPECT_TRUE(calls.front().starts_with("set_disk_limit m1 ")) << calls.front();
  uint64_t first_limit = std::stoull(calls.front().substr(calls.front().rfind(' ') + 1));
  EXPECT_LT(first_limit, 8000u);
  EXPECT_GT(first_limit, 100u);
  EXPECT_EQ(migrations_.disk_limit(id), 0u);  // lifted at completion
}

TEST_F(BrokerTest, HypervisorCommandRunsOnceAfterCompletionAndBeforeFinish) {
  Make();
  std::string id = Submit(Spec("vm1", 10000), {5e6, 10000, 0, 1});  // done in 0.5 s
  Period();
  Period();
  Period();
  ASSERT_EQ(hooks_.size(), 1u);
  EXPECT_EQ(hooks_[0], "virsh migrate --live 'vm1' qemu+ssh://'b'/system");
  EXPECT_NE(std::find(calls_at_hook_.begin(), calls_at_hook_.end(), "query_completion m1"),
            calls_at_hook_.end());
  EXPECT_EQ(std::count(calls_at_hook_.begin(), calls_at_hook_.end(), "finish m1"), 0);
  auto calls = migrations_.calls();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "finish m1"), 1);
  json r = Report("vm1");
  EXPECT_EQ(r["state"], "finished");
  EXPECT_EQ(r["met_deadline"], true);
  EXPECT_EQ(r["hypervisor"]["ran"], true);
  EXPECT_EQ(r["hypervisor"]["exit_code"], 0);
}

TEST_F(BrokerTest, FailedHypervisorCommandLeavesTheMigrationUnfinished) {
  hook_outcome_ = {1, false, "virsh: error: no domain"};
  Make();
  Submit(Spec("vm1", 10000), {5e6, 10000, 0, 1});
  Period();
  Period();
  json r = Report("vm1");
  EXPECT_EQ(r["state"], "failed");
  EXPECT_NE(r["error"].get<std::string>().find("no domain"), std::string::npos);
  EXPECT_EQ(hooks_.size(), 1u);
  auto calls = migrations_.calls();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "finish m1"), 0);
}

TEST_F(BrokerTest, ImportantTaskInDangerAsksOnlyBrokersOnItsSaturatedSections) {
  Make();
  // vm1: important, 100 MB at 10 MB/s = 10 s of copy, deadline 20 s: slack 2 < danger 3.
  TaskSpec urgent = Spec("vm1", 20, true, {"a-s1", "s1-core", "core-b"});
  urgent.sharing = {{"s1-core", {"c", "a"}}, {"a-s1", {"d"}}};
  Submit(urgent, {100e6, 10000, 0, 1});
  Submit(Spec("vm2", 10000, false, {"a-s1", "s1-core", "core-c"}), Idle());
  Submit(Spec("vm3", 10000, false, {"a-s2"}), Idle());
  Period();
  EXPECT_TRUE(peers_.sent.empty());  // in danger, but nothing saturated: nobody to ask
  broker_->ReportSlaFailure("s1-core", now_ + 100);
  Period();
  std::vector<std::pair<std::string, json>> releases, reports;
  for (const auto& m : peers_.sent) (m.second["op"] == kReleaseOp ? releases : reports).push_back(m);
  ASSERT_EQ(releases.size(), 1u);
  EXPECT_EQ(releases[0].first, "c");
  EXPECT_EQ(releases[0].second["sections"], json({"s1-core"}));
  EXPECT_EQ(releases[0].second["task"], "vm1");
  // The shared-section allocation reports to the same broker (c never answers: Alg. 2).
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].first, "c");
  EXPECT_EQ(reports[0].second["op"], kRateReportOp);
  EXPECT_EQ(reports[0].second["section"], "s1-core");
  EXPECT_EQ(migrations_.network_limit("m1"), 0u);  // important in danger ignores congestion
  EXPECT_EQ(migrations_.network_limit("m2"), 5000u);  // on the SLA-failed section anyway
  EXPECT_EQ(migrations_.network_limit("m3"), 0u);
  EXPECT_GE(Report("vm1")["release_requests_sent"].get<int>(), 2);  // c and itself (a)
}

TEST_F(BrokerTest, ReleaseRequestHoldsBackoffForTwoPeriods) {
  Make();
  Submit(Spec("vm1", 10000, false, {"x", "y"}), Idle());
  Submit(Spec("vm2", 10000, false, {"z"}), Idle());
  Period();
  now_ += 0.5;  // arrives between two periods, holds for the next two
  broker_->ReceiveRelease("b", {"y"}, "vmb");
  now_ += 0.5;
  broker_->Tick({});  // held: 5000
  Period();           // held: 2500
  Period();           // hold over: keep 2500 (first quiet period, no call)
  EXPECT_EQ(LimitCalls(), (std::vector<std::string>{"set_network_limit m1 5000",
                                                    "set_network_limit m1 2500"}));
  // An empty section list means every task here.
  broker_->ReceiveRelease("b", {}, "vmb");
  Period();
  EXPECT_EQ(migrations_.network_limit("m2"), 5000u);
}

TEST_F(BrokerTest, AVanishedDaemonChangesNothingAndIsRetried) {
  Make();
  std::string id = Submit(Spec("vm1", 10000), Idle());
  Period();
  broker_->ReportSlaFailure("a-s1", now_ + 100);
  Period();
  EXPECT_EQ(migrations_.network_limit(id), 5000u);
  migrations_.SetUnreachable(true);
  Period();
  Period();
  migrations_.SetUnreachable(false);
  EXPECT_EQ(Report("vm1")["state"], "running");
  EXPECT_EQ(migrations_.network_limit(id), 5000u);
  Period();
  EXPECT_EQ(migrations_.network_limit(id), 2500u);
}

TEST_F(BrokerTest, NoDecisionWhilePausedOrBeforeAFullPeriod) {
  Make();
  Progress paused;
  paused.phase = phase::kPaused;
  paused.pause_reason = "peer lost";
  paused.bytes_left = 1000000;
  migrations_.ScriptNext({paused});
  ASSERT_TRUE(broker_->Submit(Spec("vm1", 5)));
  now_ += 0.5;
  broker_->Tick({});  // half a period: no observation worth deciding on
  Period();
  Period();
  EXPECT_TRUE(LimitCalls().empty());  // slack would be 0 from zero rates: no disk limit
  EXPECT_EQ(Report("vm1")["phase"], "paused");
}

TEST_F(BrokerTest, DaemonReportedFailureFailsTheTask) {
  Make();
  Progress failed;
  failed.phase = phase::kFailed;
  failed.pause_reason = "target disk full";
  migrations_.ScriptNext({failed});
  ASSERT_TRUE(broker_->Submit(Spec("vm1", 100)));
  Period();
  json r = Report("vm1");
  EXPECT_EQ(r["state"], "failed");
  EXPECT_NE(r["error"].get<std::string>().find("target disk full"), std::string::npos);
  EXPECT_EQ(r["met_deadline"], false);
}

TEST_F(BrokerTest, SubmitErrors) {
  Make();
  TaskSpec foreign = Spec("vm1", 100);
  foreign.source = "b";
  auto wrong = broker_->Submit(foreign);
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("source"), std::string::npos);
  ASSERT_TRUE(broker_->Submit(Spec("vm1", 100)));
  auto twice = broker_->Submit(Spec("vm1", 100));
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code, errc::kBusy);
  migrations_.RefuseNextStart(MakeError(errc::kNotFound, "vm2.img does not exist"));
  auto refused = broker_->Submit(Spec("vm2", 100));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, errc::kNotFound);
  EXPECT_FALSE(broker_->TaskReport("vm2"));
  EXPECT_EQ(broker_->StatusReport()["tasks"].size(), 1u);
}

TEST_F(BrokerTest, CancelStopsTheTask) {
  Make();
  Submit(Spec("vm1", 100), Idle());
  ASSERT_TRUE(broker_->Cancel("vm1"));
  Period();
  EXPECT_EQ(Report("vm1")["state"], "cancelled");
  EXPECT_FALSE(broker_->Cancel("vm1"));
  EXPECT_EQ(broker_->Cancel("nope").error().code, errc::kUnknownId);
}

TEST_F(BrokerTest, CompletionOnItsOwnThreadByDefault) {
  BrokerDeps deps = Deps();
  deps.inline_completion = false;
  std::atomic<int> runs{0};
  deps.run_command = [&runs](const std::string&) {
    ++runs;
    return CommandOutcome{0, false, ""};
  };
  Broker broker(config_, deps);
  migrations_.SimulateNext({5e6, 10000, 0, 1});
  ASSERT_TRUE(broker.Submit(Spec("vm1", 100)));
  now_ += 1;
  broker.Tick({});
  now_ += 1;
  broker.Tick({});  // completing: not ticked again
  broker.WaitForCompletions();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(broker.TaskReport("vm1").value()["state"], "finished");
}

}  // namespace
}  // namespace migratefs::broker
