#include "net/peer/range_order.h"

#include <gtest/gtest.h>

#include <vector>

namespace migratefs::net {
namespace {

TEST(RangeOrderTest, DisjointRangesDoNotWait) {
  RangeOrder o;
  OrderEntry a, b, c;
  EXPECT_TRUE(o.AddRange(&a, 0, 100));
  EXPECT_TRUE(o.AddRange(&b, 100, 200));
  EXPECT_TRUE(o.AddRange(&c, 1000, 1001));
  std::vector<OrderEntry*> ready;
  o.Complete(&b, &ready);
  o.Complete(&a, &ready);
  o.Complete(&c, &ready);
  EXPECT_TRUE(ready.empty());
  EXPECT_TRUE(o.empty());
}

TEST(RangeOrderTest, OverlapsWaitInArrivalOrder) {
  RangeOrder o;
  OrderEntry a, b, c, d;
  EXPECT_TRUE(o.AddRange(&a, 0, 100));
  EXPECT_FALSE(o.AddRange(&b, 50, 150));  // overlaps a
  EXPECT_FALSE(o.AddRange(&c, 120, 130)); // overlaps b only
  EXPECT_TRUE(o.AddRange(&d, 200, 300));
  std::vector<OrderEntry*> ready;
  o.Complete(&a, &ready);
  ASSERT_EQ(ready, std::vector<OrderEntry*>{&b});
  ready.clear();
  o.Complete(&b, &ready);
  ASSERT_EQ(ready, std::vector<OrderEntry*>{&c});
}

TEST(RangeOrderTest, LongRangesAndResizeBarriers) {
  RangeOrder o;
  OrderEntry zero, w, resize, w2;
  EXPECT_TRUE(o.AddRange(&zero, 0, 1ull << 40));      // a long zero range
  EXPECT_FALSE(o.AddRange(&w, 1ull << 30, (1ull << 30) + 10));
  EXPECT_FALSE(o.AddRange(&resize, 0, UINT64_MAX));
  EXPECT_FALSE(o.AddRange(&w2, 1ull << 50, (1ull << 50) + 1));  // after the resize
  EXPECT_EQ(resize.blockers, 2);
  std::vector<OrderEntry*> ready;
  o.Complete(&zero, &ready);
  ASSERT_EQ(ready, std::vector<OrderEntry*>{&w});
  ready.clear();
  o.Complete(&w, &ready);
  ASSERT_EQ(ready, std::vector<OrderEntry*>{&resize});
  ready.clear();
  o.Complete(&resize, &ready);
  ASSERT_EQ(ready, std::vector<OrderEntry*>{&w2});
}

TEST(RangeOrderTest, BarrierWaitsForAllButNothingWaitsForIt) {
  RangeOrder o;
  OrderEntry a, b, sync, c;
  o.AddRange(&a, 0, 10);
  o.AddRange(&b, 100, 110);
  EXPECT_FALSE(o.AddBarrier(&sync));
  EXPECT_TRUE(o.AddRange(&c, 200, 210));  // a later disjoint write need not wait for the sync
  std::vector<OrderEntry*> ready;
  o.Complete(&a, &ready);
  EXPECT_TRUE(ready.empty());
  o.Complete(&b, &ready);
  ASSERT_EQ(ready, std::vector<OrderEntry*>{&sync});
}

TEST(RangeOrderTest, SmallIndexFindsOverlapStartingFarBefore) {
  RangeOrder o;
  OrderEntry big, small;
  EXPECT_TRUE(o.AddRange(&big, 0, 8u << 20));           // 8 MiB write
  EXPECT_FALSE(o.AddRange(&small, (8u << 20) - 1, 8u << 20));  // its last byte
}

TEST(RangeOrderTest, ThousandOverlappingChain) {
  RangeOrder o;
  std::vector<OrderEntry> e(1000);
  EXPECT_TRUE(o.AddRange(&e[0], 0, 4096));
  for (size_t i = 1; i < e.size(); ++i) EXPECT_FALSE(o.AddRange(&e[i], i, 4096 + i));
  std::vector<OrderEntry*> ready{&e[0]};
  size_t done = 0;
  while (!ready.empty()) {
    OrderEntry* x = ready.front();
    ready.erase(ready.begin());
    EXPECT_EQ(x, &e[done]);  // strictly in arrival order
    ++done;
    o.Complete(x, &ready);
  }
  EXPECT_EQ(done, e.size());
}

}  // namespace
}  // namespace migratefs::net
