#include "net/migration/mirror_backlog.h"

#include <gtest/gtest.h>

namespace migratefs::migration {
namespace {

using Clock = MirrorBacklog::Clock;
using std::chrono::milliseconds;

MirrorMode Async(uint64_t max, unsigned low, unsigned high) { return MirrorMode{true, max, low, high}; }

TEST(MirrorBacklog, SyncModeAlwaysWaits) {
  MirrorBacklog b;
  auto t = Clock::now();
  EXPECT_TRUE(b.Admit(4096, t));
  EXPECT_EQ(b.Snap(t).mode, "sync");
  EXPECT_EQ(b.Snap(t).backlog_bytes, 4096u);
  b.Settled(4096, t);
  EXPECT_EQ(b.Snap(t).backlog_bytes, 0u);
}

TEST(MirrorBacklog, AsyncUntilTheHighMarkThenSyncUntilTheLowMark) {
  MirrorBacklog b;
  auto t = Clock::now();
  b.Configure(Async(1000 * 100, 5, 70), t);  // low 5000, high 70000
  int waited = 0;
  for (int i = 0; i < 70; i++) waited += b.Admit(1000, t);  // exactly at the high mark
  EXPECT_EQ(waited, 0);
  EXPECT_TRUE(b.Admit(1000, t)) << "past the high mark: wait";
  EXPECT_EQ(b.Snap(t).mode, "async-throttled");
  // Draining to just above the low mark keeps it synchronous (hysteresis)...
  b.Settled(71000 - 5000, t + milliseconds(500));
  EXPECT_EQ(b.Snap(t + milliseconds(500)).backlog_bytes, 5000u);
  EXPECT_TRUE(b.Admit(10, t + milliseconds(500)));
  // ... and below it, asynchronous again.
  b.Settled(11, t + milliseconds(1000));
  EXPECT_EQ(b.Snap(t + milliseconds(1000)).mode, "async");
  EXPECT_FALSE(b.Admit(1000, t + milliseconds(1000)));
  auto s = b.Snap(t + milliseconds(2000));
  EXPECT_NEAR(s.synchronous_s, 1.0, 1e-6);
  EXPECT_EQ(s.switches, 2u);
  bool now = true;
  EXPECT_TRUE(b.TakeSwitch(&now));
  EXPECT_FALSE(now);
  EXPECT_FALSE(b.TakeSwitch(&now));
}

TEST(MirrorBacklog, NoOscillationPerWriteAroundTheMark) {
  MirrorBacklog b;
  auto t = Clock::now();
  b.Configure(Async(100000, 5, 70), t);
  for (int i = 0; i < 70; i++) b.Admit(1000, t);
  // Steady state at the mark: one in, one out, for a long time.
  for (int i = 0; i < 1000; i++) {
    b.Admit(1000, t);
    b.Settled(1000, t);
  }
  EXPECT_EQ(b.Snap(t).switches, 1u) << "must stay synchronous until the low mark, not flip per write";
}

TEST(MirrorBacklog, OneWriteLargerThanTheBandWaits) {
  MirrorBacklog b;
  auto t = Clock::now();
  b.Configure(Async(1 << 20, 5, 70), t);
  EXPECT_TRUE(b.Admit(4 << 20, t));
}

TEST(MirrorBacklog, SwitchingToSyncStopsThrottleAccounting) {
  MirrorBacklog b;
  auto t = Clock::now();
  b.Configure(Async(1000, 10, 50), t);
  EXPECT_TRUE(b.Admit(600, t));
  b.Configure(MirrorMode{}, t + milliseconds(250));
  EXPECT_EQ(b.Snap(t + milliseconds(900)).mode, "sync");
  EXPECT_NEAR(b.Snap(t + milliseconds(900)).synchronous_s, 0.25, 1e-6);
  EXPECT_EQ(b.Snap(t).backlog_bytes, 600u) << "still owed by the peer";
}

TEST(MirrorBacklog, ValidationNamesTheField) {
  EXPECT_FALSE(ValidateMirrorMode(Async(0, 5, 70)).ok());
  EXPECT_NE(ValidateMirrorMode(Async(10, 70, 70)).error().message.find("backlog_low_pct"), std::string::npos);
  EXPECT_NE(ValidateMirrorMode(Async(10, 5, 101)).error().message.find("backlog_high_pct"), std::string::npos);
  EXPECT_TRUE(ValidateMirrorMode(Async(10, 0, 100)).ok());
}

}  // namespace
}  // namespace migratefs::migration
