#include "broker/policy/fair_share.h"

#include <gtest/gtest.h>

#include <numeric>

namespace migratefs::policy {
namespace {

constexpr double kInf = 1e300;

TEST(WaterFillTest, EqualSplitWhenEveryoneWantsMore) {
  auto s = WaterFill(90, {kInf, kInf, kInf});
  EXPECT_EQ(s, (std::vector<double>{30, 30, 30}));
}

TEST(WaterFillTest, SmallWantsAreMetAndTheRestIsShared) {
  auto s = WaterFill(100, {10, kInf, 50, kInf});
  EXPECT_DOUBLE_EQ(s[0], 10);
  EXPECT_DOUBLE_EQ(s[2], 30);
  EXPECT_DOUBLE_EQ(s[1], 30);
  EXPECT_DOUBLE_EQ(s[3], 30);
}

TEST(WaterFillTest, NeverMoreThanWantedNorThePool) {
  auto s = WaterFill(100, {10, 20});
  EXPECT_EQ(s, (std::vector<double>{10, 20}));
  auto none = WaterFill(-5, {10, 20});
  EXPECT_EQ(none, (std::vector<double>{0, 0}));
  EXPECT_TRUE(WaterFill(10, {}).empty());
}

}  // namespace
}  // namespace migratefs::policy
