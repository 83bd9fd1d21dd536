// Alg. 2 alone: one test per branch of the pseudo-code (and of our additions).
#include <gtest/gtest.h>

#include "migratefs/policy.h"

namespace migratefs::policy {
namespace {

Config TestConfig() {
  Config c;
  c.increase_bps = 10e6;
  c.quiet_periods = 2;
  c.min_network_bps = 1e6;
  return c;
}

TaskState StateWith(NetAction action, std::optional<double> limit, double last_ok = 0,
                    int quiet = 0) {
  TaskState s;
  s.last_action = action;
  s.network_limit_bps = limit;
  s.last_ok_net_bps = last_ok;
  s.quiet_periods = quiet;
  return s;
}

TEST(SetNetworkLimit, NoLimitAndBackoffHalvesTheObservedRate) {
  TaskState s;
  std::vector<std::string> why;
  EXPECT_EQ(SetNetworkLimit(TestConfig(), 100e6, true, &s, &why), 50e6);
  EXPECT_EQ(s.last_action, NetAction::kReduce);
  EXPECT_EQ(why.size(), 1u);
}

TEST(SetNetworkLimit, NoLimitAndQuietStaysUnlimited) {
  TaskState s;
  EXPECT_EQ(SetNetworkLimit(TestConfig(), 100e6, false, &s, nullptr), std::nullopt);
  EXPECT_EQ(s.last_action, NetAction::kNone);
}

TEST(SetNetworkLimit, ReduceThenBackoffHalvesAgain) {  // lines 2-3
  TaskState s = StateWith(NetAction::kReduce, 50e6);
  EXPECT_EQ(SetNetworkLimit(TestConfig(), 40e6, true, &s, nullptr), 20e6);
  EXPECT_EQ(s.last_action, NetAction::kReduce);
}

TEST(SetNetworkLimit, ObservedRateAboveLimitCountsAsTheLimit) {
  TaskState s = StateWith(NetAction::kReduce, 50e6);
  EXPECT_EQ(SetNetworkLimit(TestConfig(), 52e6, true, &s, nullptr), 25e6);
}

TEST(SetNetworkLimit, HalvingStopsAtTheFloor) {
  TaskState s = StateWith(NetAction::kReduce, 1.5e6);
  EXPECT_EQ(SetNetworkLimit(TestConfig(), 1.5e6, true, &s, nullptr), 1e6);
  TaskState stalled;
  EXPECT_EQ(SetNetworkLimit(TestConfig(), 0, true, &stalled, nullptr), 1e6);
}

TEST(SetNetworkLimit, ReduceThenQuietHoldsAndRemembersLastOk) {  // lines 5-6
  TaskState s = StateWith(NetAction::kReduce, 50e6);
  EXPECT_EQ(SetNetworkLimit(TestConfig(), 45e6, false, &s, nullptr), 45e6);
  EXPECT_EQ(s.last_ok_net_bps, 45e6);
  EXPECT_EQ(s.last_action, NetAction::kIncrease);
}

TEST(SetNetworkLimit, IncreaseThenBackoffRevertsToLastOk) {  // line 10
  TaskState s = StateWith(NetAction::kIncrease, 60e6, 50e6);
  EXPECT_EQ(SetNetworkLimit(TestConfig(), 60e6, true, &s, nullptr), 50e6);
  EXPECT_EQ(s.last_action, NetAction::kReduce);
}

TEST(SetNetworkLimit, IncreaseThenBackoffWithoutLastOkHalves) {
  TaskState s = StateWith(NetAction::kIncrease, 60e6, 0);
  EXPECT_EQ(SetNetworkLimit(TestConfig(), 60e6, true, &s, nullptr), 30e6);
  EXPECT_EQ(s.last_action, NetAction::kReduce);
}

TEST(SetNetworkLimit, IncreaseThenQuietAddsC) {  // lines 12, 16
  TaskState s = StateWith(NetAction::kIncrease, 50e6, 40e6, /*quiet=*/2);
  EXPECT_EQ(SetNetworkLimit(TestConfig(), 50e6, false, &s, nullptr), 60e6);
  EXPECT_EQ(s.last_ok_net_bps, 50e6);
  EXPECT_EQ(s.last_action, NetAction::kIncrease);
}

TEST(SetNetworkLimit, IncreaseThenMoreThanNQuietDropsTheLimit) {  // lines 13-14
  TaskState s = StateWith(NetAction::kIncrease, 50e6, 40e6, /*quiet=*/3);
  EXPECT_EQ(SetNetworkLimit(TestConfig(), 50e6, false, &s, nullptr), std::nullopt);
  EXPECT_EQ(s.last_action, NetAction::kNone);
  EXPECT_EQ(s.last_ok_net_bps, 50e6);
}

}  // namespace
}  // namespace migratefs::policy
