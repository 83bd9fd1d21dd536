#include "net/migration/convergence.h"

#include <gtest/gtest.h>

namespace migratefs::migration {
namespace {

using namespace std::chrono_literals;
constexpr uint64_t kBlock = 512 * 1024;

TEST(ConvergenceWatch, SmallRestSwitchesAtOnce) {
  auto t = ConvergenceWatch::Clock::now();
  ConvergenceWatch w(kBlock, 3s, t);
  EXPECT_EQ(w.Observe(8, 0, 0, t), "drained");
  EXPECT_EQ(w.Observe(100, 400e6, 0, t), "drained");  // 50 MiB in a quarter second at 400 MB/s
  EXPECT_EQ(w.Observe(1000, 100e6, 0, t), "");
}

TEST(ConvergenceWatch, ShrinkingSetKeepsIterating) {
  auto t = ConvergenceWatch::Clock::now();
  ConvergenceWatch w(kBlock, 3s, t);
  uint64_t dirty = 10000;
  for (int s = 0; s < 20; s++) {
    EXPECT_EQ(w.Observe(dirty, 100e6, 10e6, t + std::chrono::seconds(s)), "") << s;
    dirty = dirty * 85 / 100;
    if (dirty * kBlock <= 25e6) break;
  }
}

TEST(ConvergenceWatch, DirtyRateAtSendRateSwitchesAfterTwoSeconds) {
  auto t = ConvergenceWatch::Clock::now();
  ConvergenceWatch w(kBlock, 30s, t);
  EXPECT_EQ(w.Observe(1000, 100e6, 95e6, t + 1s), "");
  EXPECT_NE(w.Observe(1000, 100e6, 95e6, t + 2s).find("no convergence"), std::string::npos);
}

TEST(ConvergenceWatch, StalledSetSwitchesAfterAPass) {
  auto t = ConvergenceWatch::Clock::now();
  ConvergenceWatch w(kBlock, 3s, t);
  EXPECT_EQ(w.Observe(1000, 100e6, 50e6, t), "");          // best = 1000; a pass ~5.2 s
  EXPECT_EQ(w.Observe(990, 100e6, 50e6, t + 4s), "");      // not 5 % better, pass not over
  EXPECT_NE(w.Observe(1010, 100e6, 50e6, t + 6s).find("stalled"), std::string::npos);
}

TEST(ConvergenceWatch, NothingAcknowledgedNeverSwitches) {
  auto t = ConvergenceWatch::Clock::now();
  ConvergenceWatch w(kBlock, 3s, t);
  for (int s = 0; s < 60; s++) EXPECT_EQ(w.Observe(1000, 0, 50e6, t + std::chrono::seconds(s)), "") << s;
}

}  // namespace
}  // namespace migratefs::migration
