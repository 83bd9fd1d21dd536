#include "net/migration/rate_meter.h"

#include <gtest/gtest.h>

namespace migratefs::migration {
namespace {

using Clock = RateMeter::Clock;
using std::chrono::milliseconds;

TEST(RateMeter, SteadyFlowReadsItsRate) {
  RateMeter m(std::chrono::seconds(2));
  Clock::time_point t = Clock::now();
  for (int i = 0; i < 500; i++) {  // 5 s of 10 KB every 10 ms = 1 MB/s
    t += milliseconds(10);
    m.Add(10'000, t);
  }
  EXPECT_NEAR(m.Rate(t), 1'000'000, 60'000);
  EXPECT_EQ(m.total(), 5'000'000u);
}

TEST(RateMeter, FallsToZeroAfterTheWindow) {
  RateMeter m(std::chrono::seconds(2));
  Clock::time_point t = Clock::now();
  m.Add(1'000'000, t + milliseconds(10));
  EXPECT_GT(m.Rate(t + milliseconds(500)), 0);
  EXPECT_EQ(m.Rate(t + std::chrono::seconds(5)), 0);
}

}  // namespace
}  // namespace migratefs::migration
