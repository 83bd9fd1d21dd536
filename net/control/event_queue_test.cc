#include "net/control/event_queue.h"

#include <gtest/gtest.h>

namespace migratefs::control {
namespace {

TEST(EventQueueTest, WakesOncePerBatchAndKeepsOrder) {
  EventQueue queue(10);
  EXPECT_TRUE(queue.Push("a\n"));
  EXPECT_FALSE(queue.Push("b\n"));
  EventQueue::Batch batch = queue.Take();
  EXPECT_EQ(batch.lines, "a\nb\n");
  EXPECT_FALSE(batch.overflowed);
  EXPECT_TRUE(queue.Push("c\n"));  // re-armed by Take()
  EXPECT_EQ(queue.Take().lines, "c\n");
}

TEST(EventQueueTest, OverflowDropsAndSticks) {
  EventQueue queue(2);
  queue.Push("a\n");
  queue.Push("b\n");
  EXPECT_TRUE(queue.Push("c\n"));  // overflow wakes the consumer
  EXPECT_FALSE(queue.Push("d\n"));
  EventQueue::Batch batch = queue.Take();
  EXPECT_TRUE(batch.overflowed);
  EXPECT_EQ(batch.lines, "");
}

}  // namespace
}  // namespace migratefs::control
