#include "net/migration/dirty_bitmap.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace migratefs::migration {
namespace {

TEST(DirtyBitmap, SetTestClearAndCount) {
  DirtyBitmap bm(100);
  EXPECT_EQ(bm.count(), 0u);
  EXPECT_TRUE(bm.Set(5));
  EXPECT_FALSE(bm.Set(5));  // already set: no double count
  EXPECT_TRUE(bm.Test(5));
  EXPECT_EQ(bm.count(), 1u);
  EXPECT_TRUE(bm.TestAndClear(5));
  EXPECT_FALSE(bm.TestAndClear(5));
  EXPECT_EQ(bm.count(), 0u);
}

TEST(DirtyBitmap, SetRangeCountsOnlyNewBitsAcrossWords) {
  DirtyBitmap bm(1000);
  EXPECT_EQ(bm.SetRange(60, 10), 10u);
  EXPECT_EQ(bm.SetRange(50, 100), 90u);
  EXPECT_EQ(bm.count(), 100u);
  for (uint64_t b = 50; b < 150; b++) EXPECT_TRUE(bm.Test(b)) << b;
  EXPECT_FALSE(bm.Test(49));
  EXPECT_FALSE(bm.Test(150));
}

TEST(DirtyBitmap, FindNextSetWalksAllBitsInOrder) {
  DirtyBitmap bm(DirtyBitmap::kChunkBits * 3);
  std::vector<uint64_t> want = {0, 63, 64, 1000, DirtyBitmap::kChunkBits - 1, DirtyBitmap::kChunkBits * 2 + 7};
  for (uint64_t b : want) bm.Set(b);
  std::vector<uint64_t> got;
  for (uint64_t b = bm.FindNextSet(0); b < bm.size(); b = bm.FindNextSet(b + 1)) got.push_back(b);
  EXPECT_EQ(got, want);
}

TEST(DirtyBitmap, GrowsWhenSetPastTheEndAndShrinkClearsTheTail) {
  DirtyBitmap bm(10);
  EXPECT_TRUE(bm.Set(5000));  // the file grew
  EXPECT_EQ(bm.size(), 5001u);
  bm.SetRange(0, 10);
  bm.Resize(4);
  EXPECT_EQ(bm.size(), 4u);
  EXPECT_EQ(bm.count(), 4u);
  EXPECT_FALSE(bm.Test(5000));
  EXPECT_FALSE(bm.Test(4));
  bm.Resize(6000);
  EXPECT_FALSE(bm.Test(5000));  // cleared bits stay clear after growing again
  EXPECT_EQ(bm.FindNextSet(4), 6000u);
}

// The invariant the whole phase-2 loop rests on: with writers setting after their
// write and a sender clearing before its read, every write's block is either still set
// or was cleared by a sender that started its read after the write.
TEST(DirtyBitmap, ConcurrentSettersAndClearerLoseNothing) {
  DirtyBitmap bm(4096);
  std::atomic<uint64_t> version[4096] = {};
  std::atomic<uint64_t> sent[4096] = {};
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 3; t++) {
    writers.emplace_back([&, t] {
      for (uint64_t i = 0; i < 200000; i++) {
        uint64_t b = (i * 2654435761u + t) % 4096;
        version[b].fetch_add(1);  // "pwrite"
        bm.Set(b);                // then mark
      }
    });
  }
  std::thread sender([&] {
    while (!stop.load()) {
      for (uint64_t b = bm.FindNextSet(0); b < bm.size(); b = bm.FindNextSet(b + 1))
        if (bm.TestAndClear(b)) sent[b].store(version[b].load());  // clear, then "read"
    }
  });
  for (auto& w : writers) w.join();
  stop = true;
  sender.join();
  for (uint64_t b = 0; b < 4096; b++) {
    if (bm.Test(b)) continue;  // still dirty: will be sent
    EXPECT_EQ(sent[b].load(), version[b].load()) << "block " << b << " lost its last write";
  }
  uint64_t set = 0;
  for (uint64_t b = 0; b < 4096; b++) set += bm.Test(b);
  EXPECT_EQ(bm.count(), set);
}

}  // namespace
}  // namespace migratefs::migration
