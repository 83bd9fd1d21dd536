#include "net/migration/work_bell.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace migratefs::migration {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(WorkBell, ARingAfterTheGenerationWasReadIsNotLost) {
  WorkBell bell;
  const uint64_t seen = bell.generation();
  bell.Ring();  // nobody waits yet: the wait that follows must still return at once
  const auto t0 = Clock::now();
  EXPECT_TRUE(bell.WaitPast(seen, 10s));
  EXPECT_LT(Clock::now() - t0, 5s);
}

TEST(WorkBell, WithoutARingTheWaitEndsAtTheTimeout) {
  WorkBell bell;
  const auto t0 = Clock::now();
  EXPECT_FALSE(bell.WaitPast(bell.generation(), 30ms));
  EXPECT_GE(Clock::now() - t0, 30ms);
  EXPECT_EQ(bell.waiting(), 0);
}

TEST(WorkBell, ARingWakesASleeperLongBeforeItsTimeout) {
  WorkBell bell;
  std::atomic<bool> rung{false};
  const uint64_t seen = bell.generation();
  std::thread sleeper([&] { rung = bell.WaitPast(seen, 30s); });
  while (bell.waiting() == 0) std::this_thread::sleep_for(1ms);
  const auto t0 = Clock::now();
  bell.Ring();
  sleeper.join();
  EXPECT_TRUE(rung.load());
  EXPECT_LT(Clock::now() - t0, 10s);
}

TEST(WorkBell, RingAllWakesEverySleeperRingWakesOne) {
  WorkBell bell;
  const uint64_t seen = bell.generation();
  std::atomic<int> woke{0};
  std::vector<std::thread> sleepers;
  for (int i = 0; i < 4; i++) sleepers.emplace_back([&] { woke += bell.WaitPast(seen, 30s) ? 1 : 0; });
  while (bell.waiting() < 4) std::this_thread::sleep_for(1ms);
  bell.Ring();
  while (woke.load() < 1) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(50ms);
  // notify_one may wake more than one (the standard allows it); it must not wake none.
  EXPECT_GE(woke.load(), 1);
  bell.RingAll();
  for (auto& t : sleepers) t.join();
  EXPECT_EQ(woke.load(), 4);
}

// The pattern the senders use, many times over: work published before a ring is
// always found, either by the look before the wait or after the wake-up. A lost
// wake-up would cost the 20 s backstop and fail the bound.
TEST(WorkBell, PublishThenRingIsNeverMissedByLookThenWait) {
  WorkBell bell;
  std::atomic<int> work{0};
  constexpr int kItems = 20000;
  const auto t0 = Clock::now();
  std::thread consumer([&] {
    int taken = 0;
    while (taken < kItems) {
      const uint64_t seen = bell.generation();
      if (work.load() > 0) {
        work.fetch_sub(1);
        taken++;
        continue;
      }
      bell.WaitPast(seen, 20s);
    }
  });
  for (int i = 0; i < kItems; i++) {
    work.fetch_add(1);
    bell.Ring();
    if (i % 64 == 0) std::this_thread::yield();
  }
  consumer.join();
  EXPECT_LT(Clock::now() - t0, 15s);
}

}  // namespace
}  // namespace migratefs::migration
