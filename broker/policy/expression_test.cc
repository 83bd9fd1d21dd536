#include <gtest/gtest.h>

#include "migratefs/policy.h"

namespace migratefs::policy {
namespace {

TEST(TimeLeft, IsExpressionOne) {
  // 50 GB at 1.25 GB/s with 30 MB/s dirtied, plus 5 s for the hypervisor.
  EXPECT_DOUBLE_EQ(TimeLeft(50e9, 1.25e9, 30e6, 5), 50e9 / 1.22e9 + 5);
}

TEST(TimeLeft, InfiniteWhenNetworkDoesNotOutrunDirtying) {
  EXPECT_EQ(TimeLeft(1e9, 30e6, 30e6, 0), kInfinity);
  EXPECT_EQ(TimeLeft(1e9, 10e6, 30e6, 0), kInfinity);
  EXPECT_EQ(TimeLeft(1e9, 0, 0, 0), kInfinity);
}

TEST(TimeLeft, NothingLeftIsJustTheHypervisor) {
  EXPECT_DOUBLE_EQ(TimeLeft(0, 0, 30e6, 7), 7);
}

TEST(Slack, IsTimeToDeadlineOverTimeLeft) {
  EXPECT_DOUBLE_EQ(Slack(300, 100), 3.0);
}

TEST(Slack, WorstWhenDeadlinePassedOrNoConvergence) {
  EXPECT_EQ(Slack(0, 10), 0);
  EXPECT_EQ(Slack(-5, 10), 0);
  EXPECT_EQ(Slack(100, kInfinity), 0);
}

TEST(Slack, InfiniteWhenDoneBeforeDeadline) {
  EXPECT_EQ(Slack(100, 0), kInfinity);
}

TEST(ToKbps, RoundsUpSoSmallLimitsNeverMeanNone) {
  EXPECT_EQ(ToKbps(1), 1u);
  EXPECT_EQ(ToKbps(1000), 1u);
  EXPECT_EQ(ToKbps(1001), 2u);
  EXPECT_EQ(ToKbps(1.25e9), 1250000u);
  EXPECT_EQ(ToKbps(0), 0u);
  EXPECT_EQ(ToKbps(-3), 0u);
}

TEST(NetActionNames, MatchThePaper) {
  EXPECT_STREQ(ToString(NetAction::kReduce), "reduce bandwidth");
  EXPECT_STREQ(ToString(NetAction::kIncrease), "increase bandwidth");
  EXPECT_STREQ(ToString(NetAction::kNone), "none");
}

}  // namespace
}  // namespace migratefs::policy
