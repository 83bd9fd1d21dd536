// Priority classes, workload reservations and fleet caps as the broker applies them
// (issue 11, items 3 and 5), period by period against the in-memory migratefs.
#include <gtest/gtest.h>

#include <algorithm>

#include "broker/daemon/broker_test_fixture.h"

namespace migratefs::broker {
namespace {

using nlohmann::json;
using policy::PriorityClass;
using testing::SimulatedVm;

class BrokerClassesTest : public testing::BrokerFixture {
 protected:
  BrokerClassesTest() { config_.policy.min_disk_bps = 1e5; }

  // A 20 MB/s host link whose workload keeps 4 MB/s and may use up to 12 MB/s.
  void ReservedLink() {
    LinkConfig link;
    link.iface = "eth0";
    link.capacity_kbps = 20000;
    link.section = "a-s1";
    link.workload_min_kbps = 4000;
    link.workload_max_kbps = 12000;
    link.workload_headroom_kbps = 0;
    config_.links.push_back(link);
  }

  TaskSpec Spec(const std::string& vm, PriorityClass cls, bool important = false) const {
    TaskSpec spec = BrokerFixture::Spec(vm);
    spec.important = important;
    spec.priority = cls;
    return spec;
  }

  std::string Submit(const TaskSpec& spec, SimulatedVm vm = {1e9, 10000, 0, 1}) {
    return BrokerFixture::Submit(spec, vm);
  }

  // One period; the link counter shows `workload_kbps` plus what our migrations sent.
  void Period(double workload_kbps = -1) {
    now_ += 1;
    std::vector<LinkSample> links;
    if (workload_kbps >= 0) {
      double ours = 0;
      json status = broker_->StatusReport();
      for (const auto& t : status["tasks"]) {
        if (t["state"] == "running") {
          uint64_t limit = t["network_limit_kbps"];
          ours += limit ? std::min<double>(limit, 10000) : 10000;
        }
      }
      links.push_back({"eth0", "a-s1", 20000, workload_kbps + ours, 0, true, false});
    }
    broker_->Tick(links);
  }

  int Starts() {
    auto calls = migrations_.calls();
    return static_cast<int>(std::count_if(calls.begin(), calls.end(),
                                          [](const std::string& c) { return c.starts_with("start "); }));
  }
};

TEST_F(BrokerClassesTest, HighTakesEverythingAboveTheLowerLimit) {
  ReservedLink();
  Make();
  Submit(Spec("h", PriorityClass::kHigh));
  Period(15000);  // a busy workload does not matter to high
  EXPECT_EQ(Limit("h"), 16000u);
  EXPECT_EQ(broker_->TaskReport("h").value()["priority"], "high");
}

TEST_F(BrokerClassesTest, ImportantMapsOntoHigh) {
  ReservedLink();
  Make();
  Submit(Spec("i", PriorityClass::kLow, /*important=*/true));
  Period(15000);
  EXPECT_EQ(Limit("i"), 16000u);
  EXPECT_EQ(broker_->TaskReport("i").value()["priority"], "high");
}

TEST_F(BrokerClassesTest, MediumAboveTheUpperLimitGrowsIntoIdleBandwidthAndLowYieldsFirst) {
  ReservedLink();
  Make();
  Submit(Spec("m", PriorityClass::kMedium));
  Submit(Spec("l", PriorityClass::kLow));
  Period(14000);  // workload above its upper limit: medium gets C - max, low nothing
  EXPECT_EQ(Limit("m"), 8000u);
  EXPECT_EQ(Limit("l"), 100u);  // the floor
  Period(0);  // the workload goes idle: medium grows to C - min, still nothing for low
  EXPECT_EQ(Limit("m"), 16000u);
  EXPECT_EQ(Limit("l"), 100u);
  Period(7000);  // in between: medium leaves the workload what it uses
  EXPECT_EQ(Limit("m"), 13000u);
  EXPECT_EQ(Limit("l"), 100u);
}

TEST_F(BrokerClassesTest, LowAloneGetsWhatIsLeft) {
  ReservedLink();
  Make();
  Submit(Spec("l", PriorityClass::kLow));
  Period(14000);
  EXPECT_EQ(Limit("l"), 6000u);
  Period();  // no sample: the workload counts as at its upper limit
  EXPECT_EQ(Limit("l"), 8000u);
}

// The class applies from the first byte: a start carries the ceiling, so a medium or
// low migration cannot flood the link (and the workload's lower limit) during the
// period before the broker first sets limits. It failed before: starts carried none.
TEST_F(BrokerClassesTest, AStartAlreadyCarriesTheClassCeiling) {
  ReservedLink();
  Make();
  const std::string h = Submit(Spec("h", PriorityClass::kHigh));
  const std::string m = Submit(Spec("m", PriorityClass::kMedium));
  const std::string l = Submit(Spec("l", PriorityClass::kLow));
  // No link sample yet: the workload counts as at its upper limit (12 MB/s of 20).
  EXPECT_EQ(DaemonLimit(h), 16000u);  // everything above the lower limit
  EXPECT_EQ(DaemonLimit(m), 100u);    // high took what is above the upper limit: the floor
  EXPECT_EQ(DaemonLimit(l), 100u);
  EXPECT_EQ(Limit("m"), 100u);
  Period(14000);
  EXPECT_EQ(Limit("l"), 100u);
}

// A low task held at the floor whose rate reads 0 has slack 0 by Expression 1
// ("cannot finish"), which made it "in danger" and served as high, taking medium's
// bandwidth with a deadline a day away (seen on the htb testbed). At the rate it is
// allowed it finishes long before its deadline: it stays low.
TEST_F(BrokerClassesTest, AZeroRateUnderOurOwnLimitIsNotDanger) {
  ReservedLink();
  Make();
  Submit(Spec("m", PriorityClass::kMedium));
  Submit(Spec("l", PriorityClass::kLow), SimulatedVm{1e8, 0, 0, 1});  // reads 0 KB/s
  for (int i = 0; i < 4; i++) Period(14000);
  EXPECT_EQ(Limit("l"), 100u) << broker_->TaskReport("l").value().dump();
  EXPECT_EQ(Limit("m"), 8000u);
}

TEST_F(BrokerClassesTest, WithoutAReservationClassesSetNoLimit) {
  Make();
  Submit(Spec("l", PriorityClass::kLow));
  Period();
  Period();
  EXPECT_EQ(Limit("l"), 0u);
}

TEST_F(BrokerClassesTest, LowYieldsFirstOnASaturatedSection) {
  Make();  // no reservation: the classes only decide who backs off first
  Submit(Spec("m", PriorityClass::kMedium));
  Submit(Spec("l", PriorityClass::kLow));
  Period();
  ASSERT_TRUE(broker_->ReportSlaFailure("a-s1", now_ + 1000));
  std::vector<uint64_t> low;
  for (int i = 0; i < 7; ++i) {
    Period();
    low.push_back(Limit("l"));
    EXPECT_EQ(Limit("m"), 0u) << "period " << i << ": medium backs off while low can still yield";
  }
  EXPECT_EQ(low, (std::vector<uint64_t>{5000, 2500, 1250, 625, 313, 157, 100}));  // halvings to the floor
  Period();  // low is at its floor: now medium sees the congestion
  EXPECT_EQ(Limit("m"), 5000u);
  EXPECT_EQ(Limit("l"), 100u);
}

TEST_F(BrokerClassesTest, MaxParallelQueuesAndStartsByClassThenDeadline) {
  config_.max_parallel = 1;
  Make();
  EXPECT_EQ(Submit(Spec("first", PriorityClass::kLow), {5e6, 10000, 0, 1}), "m1");  // done in 0.5 s
  EXPECT_EQ(Submit(Spec("low", PriorityClass::kLow)), "");
  TaskSpec late_high = Spec("high-late", PriorityClass::kHigh);
  late_high.deadline_s += 10;
  EXPECT_EQ(Submit(late_high), "");
  EXPECT_EQ(Submit(Spec("high", PriorityClass::kHigh)), "");
  EXPECT_EQ(Starts(), 1);
  EXPECT_EQ(broker_->TaskReport("low").value()["state"], "queued");
  Period();  // "first" completes and finishes; one slot frees: the earliest high starts
  EXPECT_EQ(broker_->TaskReport("first").value()["state"], "finished");
  EXPECT_EQ(Starts(), 2);
  EXPECT_EQ(broker_->TaskReport("high").value()["state"], "running");
  EXPECT_EQ(broker_->TaskReport("high-late").value()["state"], "queued");
  EXPECT_EQ(broker_->TaskReport("low").value()["state"], "queued");
  ASSERT_TRUE(broker_->Cancel("high"));
  Period();
  EXPECT_EQ(broker_->TaskReport("high-late").value()["state"], "running");
  EXPECT_EQ(broker_->TaskReport("low").value()["state"], "queued");
  EXPECT_EQ(Starts(), 3);
}

TEST_F(BrokerClassesTest, HostBudgetIsSharedAndTaskCapsHold) {
  config_.budget_kbps = 6000;
  Make();
  Submit(Spec("a1", PriorityClass::kMedium));
  TaskSpec capped = Spec("a2", PriorityClass::kMedium);
  capped.max_kbps = 1000;  // a section budget share from the scheduler
  Submit(capped);
  Submit(Spec("a3", PriorityClass::kMedium));
  Period();
  EXPECT_EQ(Limit("a2"), 1000u);
  EXPECT_EQ(Limit("a1"), 2500u);  // (6000 - 1000) / 2
  EXPECT_EQ(Limit("a3"), 2500u);
}

}  // namespace
}  // namespace migratefs::broker
