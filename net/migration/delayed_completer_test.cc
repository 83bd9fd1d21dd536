#include "net/migration/delayed_completer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace migratefs::migration {
namespace {

struct Recorder {
  std::mutex mu;
  std::vector<uint64_t> order;
  static void Fn(void* ctx, uint64_t arg, int err) {
    auto* r = static_cast<Recorder*>(ctx);
    std::lock_guard<std::mutex> lock(r->mu);
    r->order.push_back(arg);
  }
};

TEST(DelayedCompleter, CompletesInDeadlineOrderNotBefore) {
  Recorder rec;
  auto start = DelayedCompleter::Clock::now();
  {
    DelayedCompleter dc;
    dc.CompleteAt(start + std::chrono::milliseconds(80), Completion(&Recorder::Fn, &rec, 2));
    dc.CompleteAt(start + std::chrono::milliseconds(40), Completion(&Recorder::Fn, &rec, 1));
    dc.CompleteAt(start - std::chrono::milliseconds(1), Completion(&Recorder::Fn, &rec, 0));  // at once
    {
      std::lock_guard<std::mutex> lock(rec.mu);
      EXPECT_EQ(rec.order, std::vector<uint64_t>({0}));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(rec.order, std::vector<uint64_t>({0, 1, 2}));
  EXPECT_GE(DelayedCompleter::Clock::now() - start, std::chrono::milliseconds(80));
}

TEST(DelayedCompleter, ShutdownCompletesEverythingPending) {
  Recorder rec;
  {
    DelayedCompleter dc;
    dc.CompleteAt(DelayedCompleter::Clock::now() + std::chrono::hours(1), Completion(&Recorder::Fn, &rec, 7));
  }
  EXPECT_EQ(rec.order, std::vector<uint64_t>({7}));
}

}  // namespace
}  // namespace migratefs::migration
