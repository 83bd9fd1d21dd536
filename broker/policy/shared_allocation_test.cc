#include "broker/policy/shared_allocation.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "broker/policy/rate_allocation.h"

namespace migratefs::policy {
namespace {

std::vector<SharedTask> Three() {
  // Seed 000's 3-VM row, split over two brokers, sharing 125 MB/s between them.
  return {{"h2", "vm3", 904.72e6, 10.24e6, 40e6, false},
          {"h1", "vm1", 500.02e6, 10.24e6, 45e6, false},
          {"h1", "vm2", 479.92e6, 10.24e6, 40e6, false}};
}

TEST(SharedAllocation, MatchesTheSeedAndDoesNotDependOnOrder) {
  auto a = AllocateSection(Three(), 3);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_NEAR(a.value().pool_bps, 125e6, 1);
  EXPECT_NEAR(a.value().rate_bps.at("h1/vm1") / 1e6, 38.48, 0.5);
  EXPECT_NEAR(a.value().rate_bps.at("h1/vm2") / 1e6, 37.88, 0.5);
  EXPECT_NEAR(a.value().rate_bps.at("h2/vm3") / 1e6, 48.62, 0.5);
  auto reversed = Three();
  std::reverse(reversed.begin(), reversed.end());
  auto b = AllocateSection(reversed, 3);
  ASSERT_TRUE(b);
  EXPECT_EQ(a.value().rate_bps, b.value().rate_bps);  // every broker computes the same
}

TEST(SharedAllocation, TasksInDangerAreLeftOutWithTheirBandwidth) {
  auto tasks = Three();
  tasks[0].in_danger = true;  // h2/vm3 keeps following Alg. 1
  auto a = AllocateSection(tasks, 3);
  ASSERT_TRUE(a);
  EXPECT_EQ(a.value().rate_bps.count("h2/vm3"), 0u);
  EXPECT_NEAR(a.value().pool_bps, 85e6, 1);
  EXPECT_NEAR(a.value().rate_bps.at("h1/vm1") + a.value().rate_bps.at("h1/vm2"), 85e6, 10);
  EXPECT_GT(a.value().rate_bps.at("h1/vm1"), a.value().rate_bps.at("h1/vm2"));  // more left, more rate
}

TEST(SharedAllocation, FallsBackWhenThereIsNothingToSplitOrNoFeasibleSplit) {
  auto tasks = Three();
  tasks[0].in_danger = tasks[1].in_danger = true;
  EXPECT_EQ(AllocateSection(tasks, 3).error().code, errc::kInvalidArgument);
  tasks = Three();
  for (auto& t : tasks) t.dirty_bps = 50e6;  // 150 MB/s of dirtying in a 125 MB/s pool
  EXPECT_EQ(AllocateSection(tasks, 3).error().code, std::string(kRatesInfeasible));
  tasks = Three();
  tasks[1].bytes_left = -1;
  EXPECT_EQ(AllocateSection(tasks, 3).error().code, errc::kInvalidArgument);
}

}  // namespace
}  // namespace migratefs::policy
