// Alg. 1 on hand-made traces: each test feeds a short series of observations, one
// per period, and checks every decision. Together they take every branch.
#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "migratefs/policy.h"

namespace migratefs::policy {
namespace {

constexpr double kNone = -1;  // "no limit" in the expectation tables

Config TestConfig() {
  Config c;  // danger 300%, warning 400%
  c.increase_bps = 10e6;
  c.quiet_periods = 2;
  c.min_network_bps = 1e6;
  c.min_disk_bps = 1e6;
  return c;
}

// One period: what the broker saw and what Decide() must answer.
struct Step {
  double disk_left, net, dirty, time_to_deadline;
  bool backoff;
  double want_net, want_disk;
  bool want_release = false;
  bool important = false;
  double write = -1;  // -1: same as dirty
};

Observation ToObservation(const Step& s, int period) {
  Observation o;
  o.now_s = 60.0 * period;
  o.deadline_s = o.now_s + s.time_to_deadline;
  o.disk_left_bytes = s.disk_left;
  o.net_rate_bps = s.net;
  o.dirty_rate_bps = s.dirty;
  o.disk_write_rate_bps = s.write < 0 ? s.dirty : s.write;
  o.backoff = s.backoff;
  o.important = s.important;
  return o;
}

void ExpectLimit(std::optional<double> got, double want, const char* what, int period) {
  if (want == kNone) {
    EXPECT_FALSE(got.has_value()) << what << " in period " << period << " = " << *got;
  } else {
    ASSERT_TRUE(got.has_value()) << what << " in period " << period;
    EXPECT_NEAR(*got, want, 1) << what << " in period " << period;
  }
}

TaskState RunTrace(const std::vector<Step>& trace, Config config = TestConfig()) {
  TaskState state;
  for (size_t i = 0; i < trace.size(); ++i) {
    const Step& s = trace[i];
    Decision d = Decide(config, ToObservation(s, static_cast<int>(i)), &state);
    ExpectLimit(d.network_limit_bps, s.want_net, "network limit", i);
    ExpectLimit(d.disk_limit_bps, s.want_disk, "disk limit", i);
    EXPECT_EQ(d.release_request, s.want_release) << "period " << i;
  }
  return state;
}

// 1 GB left at 100 MB/s is 10 s; 1000 s to the deadline: slack 100, far from danger.
TEST(Decide, PlentyOfSlackAndQuietDoesNothing) {
  TaskState s = RunTrace({{1e9, 100e6, 0, 1000, false, kNone, kNone},
                          {1e9, 100e6, 0, 1000, false, kNone, kNone}});
  EXPECT_EQ(s.quiet_periods, 2);
  EXPECT_EQ(s.last_action, NetAction::kNone);
}

TEST(Decide, AimdFromFirstBackoffToNoLimit) {
  TaskState s = RunTrace({
      {1e9, 100e6, 0, 1000, true, 50e6, kNone},   // first backoff: netrate/2
      {1e9, 50e6, 0, 1000, true, 25e6, kNone},    // persists: halve again
      {1e9, 25e6, 0, 1000, false, 25e6, kNone},   // quiet 1: hold, lastOK = 25
      {1e9, 25e6, 0, 1000, false, 35e6, kNone},   // quiet 2 (not > n=2): +C
      {1e9, 35e6, 0, 1000, false, kNone, kNone},  // quiet 3 > n: limit dropped
      {1e9, 100e6, 0, 1000, false, kNone, kNone},
  });
  EXPECT_EQ(s.last_action, NetAction::kNone);
}

TEST(Decide, CongestionAfterIncreaseRevertsThenHalves) {
  RunTrace({
      {1e9, 100e6, 0, 1000, true, 50e6, kNone},   // reduce
      {1e9, 50e6, 0, 1000, false, 50e6, kNone},   // hold, lastOK = 50
      {1e9, 50e6, 0, 1000, false, 60e6, kNone},   // +C, lastOK = 50
      {1e9, 60e6, 0, 1000, true, 50e6, kNone},    // congestion follows increase: revert
      {1e9, 50e6, 0, 1000, true, 25e6, kNone},    // and persists: halve
  });
}

TEST(Decide, BacksOffAtExactlyDanger) {
  // 10 s left, 30 s to deadline: slack 300% == danger, so line 6 holds; it is also
  // <= warning, so the disk is limited (Expression 1 holds with room: not binding).
  RunTrace({{1e9, 100e6, 0, 30, true, 50e6, 100e6 - 1e9 / 30.0}});
}

TEST(Decide, InDangerDoesNotBackOff) {
  // 10 s left, 20 s to go: slack 2 < danger. No limit before, none after.
  RunTrace({{1e9, 100e6, 0, 20, true, kNone, 50e6}});
}

TEST(Decide, InDangerHoldsAnExistingLimitUnderCongestion) {
  RunTrace({
      {1e9, 100e6, 0, 1000, true, 50e6, kNone},             // reduce to 50
      {1e9, 50e6, 0, 40, true, 50e6, 50e6 - 1e9 / 40.0},    // slack 2: held, disk limited
  });
}

TEST(Decide, InDangerRecoversWhenQuiet) {
  RunTrace({
      {1e9, 100e6, 0, 1000, true, 50e6, kNone},             // reduce to 50
      {1e9, 50e6, 0, 40, false, 50e6, 50e6 - 1e9 / 40.0},   // quiet: hold (Alg. 2 line 6)
      {1e9, 50e6, 0, 40, false, 60e6, 50e6 - 1e9 / 40.0},   // quiet: +C
  });
}

TEST(Decide, ImportantInDangerIgnoresCongestionAndAsksForBandwidth) {
  TaskState s = RunTrace({
      {1e9, 100e6, 0, 1000, true, 50e6, kNone, false, true},           // slack: backs off
      {1e9, 50e6, 0, 40, true, kNone, 50e6 - 1e9 / 40.0, true, true},  // danger: drop + ask
      {1e9, 100e6, 0, 1000, true, 50e6, kNone, false, true},           // safe again: backs off
  });
  EXPECT_EQ(s.last_action, NetAction::kReduce);
}

TEST(Decide, ImportantInDangerAsksEvenWithoutCongestion) {
  RunTrace({{1e9, 100e6, 0, 20, false, kNone, 50e6, true, true}});
}

TEST(Decide, WarningSizesTheDiskLimitWithTheWriteToDirtyRatio) {
  // 10 GB left, 100 MB/s out, 30 MB/s dirtied by 60 MB/s of writes: 142.9 s left,
  // 500 s to go: slack 3.5, between danger and warning. Aiming at slack 400%
  // (disk_target_pct) the copy must drain 10 GB in 125 s = 80 MB/s, so dirtying may
  // be 20 MB/s, i.e. writes 40 MB/s.
  Config c = TestConfig();
  c.disk_target_pct = 400;
  Step s{10e9, 100e6, 30e6, 500, false, kNone, 40e6};
  s.write = 60e6;
  RunTrace({s}, c);
}

TEST(Decide, WarningAtExactlyWarning) {
  RunTrace({{1e9, 100e6, 0, 40, false, kNone, 100e6 - 1e9 / 40.0}});
}

TEST(Decide, DiskLimitLiftedWhenUnthrottledRateWouldDo) {
  Config c = TestConfig();
  c.disk_target_pct = 400;
  Step warn{10e9, 100e6, 30e6, 500, false, kNone, 40e6};
  warn.write = 60e6;
  // Later: 5 GB left, 440 s to go. At the remembered 30 MB/s of dirtying the slack
  // would be 6.2 > warning, so the limit goes.
  Step calm{5e9, 100e6, 20e6, 440, false, kNone, kNone};
  calm.write = 40e6;
  RunTrace({warn, calm}, c);
}

TEST(Decide, DiskLimitKeptWhileOnlyTheLimitKeepsUsOutOfWarning) {
  Config c = TestConfig();
  c.disk_target_pct = 400;
  Step warn{10e9, 100e6, 30e6, 500, false, kNone, 40e6};
  warn.write = 60e6;
  // 7 GB left, 380 s to go: slack 4.34 at the throttled 20 MB/s, but 3.8 at the
  // VM's own 30 MB/s. Keep the limit as it is.
  Step held{7e9, 100e6, 20e6, 380, false, kNone, 40e6};
  held.write = 40e6;
  RunTrace({warn, held}, c);
}

TEST(Decide, PassedDeadlineThrottlesTheDiskToTheFloor) {
  RunTrace({{1e9, 100e6, 30e6, -10, true, kNone, 1e6}});
}

TEST(Decide, NoConvergenceLimitsDirtyingBelowTheNetworkRate) {
  // 20 MB/s out, 30 MB/s dirtied: Expression 1 is infinite, slack 0. To ship 1 GB
  // in 100 s we need a 10 MB/s drain: dirtying may be 10 MB/s.
  RunTrace({{1e9, 20e6, 30e6, 100, false, kNone, 10e6}});
}

TEST(Decide, UnreachableTargetThrottlesToTheFloor) {
  // 1 GB left but only 5 s to go at 100 MB/s: no dirty budget at all.
  RunTrace({{1e9, 100e6, 30e6, 5, false, kNone, 1e6}});
}

TEST(Decide, VmmTimeCountsAgainstTheDeadline) {
  Config c = TestConfig();
  Observation o = ToObservation({1e9, 100e6, 0, 1000, false, kNone, kNone}, 0);
  o.vmm_time_s = 10;
  TaskState s;
  Decision d = Decide(c, o, &s);
  EXPECT_DOUBLE_EQ(d.time_left_s, 20);
  EXPECT_DOUBLE_EQ(d.slack, 50);
  EXPECT_TRUE(d.reasons.empty());
}

TEST(Decide, BackoffResetsTheQuietCount) {
  TaskState s = RunTrace({
      {1e9, 100e6, 0, 1000, false, kNone, kNone},
      {1e9, 100e6, 0, 1000, false, kNone, kNone},
      {1e9, 100e6, 0, 1000, true, 50e6, kNone},
  });
  EXPECT_EQ(s.quiet_periods, 0);
}

TEST(Decide, ReasonsExplainEachBranch) {
  TaskState s;
  Decision d = Decide(TestConfig(), ToObservation({1e9, 100e6, 0, 30, true, 0, 0}, 0), &s);
  ASSERT_EQ(d.reasons.size(), 3u);  // back off, Alg. 2's first halving, disk limit
  EXPECT_NE(d.reasons[0].find("back off"), std::string::npos) << d.reasons[0];
  EXPECT_NE(d.reasons[1].find("alg2"), std::string::npos) << d.reasons[1];
  EXPECT_NE(d.reasons[2].find("disk limit"), std::string::npos) << d.reasons[2];
}

}  // namespace
}  // namespace migratefs::policy
