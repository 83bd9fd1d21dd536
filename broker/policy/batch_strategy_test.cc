#include "broker/policy/batch_strategy.h"

#include <gtest/gtest.h>

namespace migratefs::policy {
namespace {

using V = std::vector<std::string>;
BatchTask T(const std::string& vm, PriorityClass c, double size = 0) { return {vm, c, size}; }
constexpr auto kH = PriorityClass::kHigh;
constexpr auto kM = PriorityClass::kMedium;
constexpr auto kL = PriorityClass::kLow;

TEST(BatchStrategyTest, ContentionLevels) {
  ContentionThresholds t;
  EXPECT_EQ(ClassifyContention(0.1, t), Contention::kLow);
  EXPECT_EQ(ClassifyContention(0.5, t), Contention::kModerate);
  EXPECT_EQ(ClassifyContention(0.79, t), Contention::kModerate);
  EXPECT_EQ(ClassifyContention(0.8, t), Contention::kHigh);
  EXPECT_TRUE(ValidateContentionThresholds(t));
  EXPECT_FALSE(ValidateContentionThresholds({0.8, 0.5}));
  EXPECT_FALSE(ValidateContentionThresholds({0, 0.5}));
}

TEST(BatchStrategyTest, HighPriorityGoesInParallelEvenUnderHighContention) {
  auto s = ChooseBatchStrategy({T("a", kH), T("b", kH), T("c", kH)}, 0.95);
  EXPECT_EQ(s.mode, "gang");
  EXPECT_EQ(s.gang, (V{"a", "b", "c"}));
  EXPECT_NE(s.reason.find("high contention"), std::string::npos) << s.reason;
}

TEST(BatchStrategyTest, LowPriorityLowContentionParallel) {
  auto s = ChooseBatchStrategy({T("a", kL), T("b", kL)}, 0.2);
  EXPECT_EQ(s.mode, "gang");
  EXPECT_EQ(s.contention, Contention::kLow);
}

TEST(BatchStrategyTest, LowPriorityModerateOrHighContentionSerialShortestFirst) {
  for (double u : {0.6, 0.9}) {
    auto s = ChooseBatchStrategy({T("big", kL, 9e9), T("small", kL, 1e9), T("mid", kL, 4e9)}, u);
    EXPECT_EQ(s.mode, "serial") << u;
    EXPECT_EQ(s.serial, (V{"small", "mid", "big"})) << u;
    EXPECT_TRUE(s.gang.empty());
  }
}

TEST(BatchStrategyTest, MediumIsSerialOnlyUnderHighContention) {
  EXPECT_EQ(ChooseBatchStrategy({T("a", kM), T("b", kM)}, 0.6).mode, "gang");
  EXPECT_EQ(ChooseBatchStrategy({T("a", kM), T("b", kM)}, 0.85).mode, "serial");
}

TEST(BatchStrategyTest, MixedBatchesKeepHighInParallelAndChainTheRest) {
  auto s = ChooseBatchStrategy({T("l1", kL, 2e9), T("h", kH), T("m", kM, 5e9), T("l0"  , kL)}, 0.9);
  EXPECT_EQ(s.mode, "mixed");
  EXPECT_EQ(s.gang, (V{"h"}));
  EXPECT_EQ(s.serial, (V{"m", "l1", "l0"}));  // medium first, then low by size, unknown last
}

TEST(BatchStrategyTest, UnknownUtilisationCountsAsModerate) {
  auto s = ChooseBatchStrategy({T("a", kL), T("b", kL)}, -1);
  EXPECT_EQ(s.contention, Contention::kModerate);
  EXPECT_EQ(s.mode, "serial");
  EXPECT_NE(s.reason.find("unknown"), std::string::npos);
}

TEST(BatchStrategyTest, AChainOfOneStartsAtOnce) {
  auto s = ChooseBatchStrategy({T("h", kH), T("l", kL)}, 0.9);
  EXPECT_EQ(s.mode, "gang");
  EXPECT_EQ(s.gang, (V{"h", "l"}));
}

}  // namespace
}  // namespace migratefs::policy
