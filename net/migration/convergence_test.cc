#include "net/migration/convergence.h"

#include <gtest/gtest.h>

namespace migratefs::migration {
namespace {

using namespace std::chrono_literals;
constexpr uint64_t kBlock = 512 * 1024;

TEST(ConvergenceWatch, SmallRestSwitchesAtOnce) {
  auto t = ConvergenceWatch::Clock::now();
  ConvergenceWatch w(kBlock, 3s, t);
  EXPECT_EQ(w.Observe(8, 0, 0, true, t), "drained");
  EXPECT_EQ(w.Observe(100, 400e6, 0, true, t), "drained");  // 50 MiB in a quarter second at 400 MB/s
  EXPECT_EQ(w.Observe(1000, 100e6, 0, true, t), "");
}

TEST(ConvergenceWatch, ShrinkingSetKeepsIterating) {
  auto t = ConvergenceWatch::Clock::now();
  ConvergenceWatch w(kBlock, 3s, t);
  uint64_t dirty = 10000;
  for (int s = 0; s < 20; s++) {
    EXPECT_EQ(w.Observe(dirty, 100e6, 10e6, true, t + std::chrono::seconds(s)), "") << s;
    dirty = dirty * 85 / 100;
    if (dirty * kBlock <= 25e6) break;
  }
}

TEST(ConvergenceWatch, DirtyRateAtSendRateSwitchesAfterTwoSeconds) {
  auto t = ConvergenceWatch::Clock::now();
  ConvergenceWatch w(kBlock, 30s, t);
  EXPECT_EQ(w.Observe(1000, 100e6, 95e6, true, t + 1s), "");
  EXPECT_NE(w.Observe(1000, 100e6, 95e6, true, t + 2s).find("no convergence"), std::string::npos);
}

TEST(ConvergenceWatch, StalledSetSwitchesAfterAPass) {
  auto t = ConvergenceWatch::Clock::now();
  ConvergenceWatch w(kBlock, 3s, t);
  EXPECT_EQ(w.Observe(1000, 100e6, 50e6, true, t), "");          // best = 1000; a pass ~5.2 s
  EXPECT_EQ(w.Observe(990, 100e6, 50e6, true, t + 4s), "");      // not 5 % better, pass not over
  EXPECT_NE(w.Observe(1010, 100e6, 50e6, true, t + 6s).find("stalled"), std::string::npos);
}

TEST(ConvergenceWatch, NothingAcknowledgedNeverSwitches) {
  auto t = ConvergenceWatch::Clock::now();
  ConvergenceWatch w(kBlock, 3s, t);
  for (int s = 0; s < 60; s++) EXPECT_EQ(w.Observe(1000, 0, 50e6, true, t + std::chrono::seconds(s)), "") << s;
}

}  // namespace
}  // namespace migratefs::migration

namespace migratefs::migration {
namespace {

// Issue 17.4: 1.6 s into a cut link the decaying 2 s send average still looked like a
// live link that the VM outpaces, and phase 3 began over a dead link. While nothing is
// acknowledged nothing switches, and a live link is judged on its own rates again.
TEST(ConvergenceWatch, DeadLinkNeverSwitchesAndItsRatesDoNotCount) {
  auto t = ConvergenceWatch::Clock::now();
  ConvergenceWatch w(kBlock, 3s, t);
  EXPECT_EQ(w.Observe(1000, 40e6, 30e6, true, t + 1s), "");
  // The link dies: the meter still shows a falling send rate well below the dirty rate.
  for (int ms = 1100; ms < 10000; ms += 100) {
    const double decaying = 40e6 * std::max(0.05, 1.0 - (ms - 1000) / 2000.0);
    EXPECT_EQ(w.Observe(1000, decaying, 34e6, false, t + std::chrono::milliseconds(ms)), "") << ms;
  }
  // Back: the first 2 s of the live link decide, not the window that spanned the cut.
  EXPECT_EQ(w.Observe(1000, 5e6, 34e6, true, t + 10s), "");
  EXPECT_EQ(w.Observe(1000, 5e6, 34e6, true, t + 11s), "");
  EXPECT_NE(w.Observe(1000, 5e6, 34e6, true, t + 12s).find("no convergence"), std::string::npos);
}

TEST(ConvergenceWatch, DrainedStillSwitchesOnALiveLink) {
  auto t = ConvergenceWatch::Clock::now();
  ConvergenceWatch w(kBlock, 3s, t);
  EXPECT_EQ(w.Observe(4, 0, 0, false, t), "");
  EXPECT_EQ(w.Observe(4, 0, 0, true, t + 1s), "drained");
}

}  // namespace
}  // namespace migratefs::migration
