#include "net/peer/send_queue.h"

#include <gtest/gtest.h>

#include <vector>

namespace migratefs::net {
namespace {

// A data frame of [off, off + len) of `handle`, tagged by its first header byte.
OutFrame Data(char tag, uint32_t handle, uint64_t off, size_t len) {
  OutFrame f;
  f.header[0] = static_cast<uint8_t>(tag);
  f.data_len = len;
  f.handle = handle;
  f.offset = off;
  return f;
}
OutFrame Control(char tag) {  // a resize, sync, open...: no range
  OutFrame f;
  f.header[0] = static_cast<uint8_t>(tag);
  return f;
}

std::string Drain(SendQueue& q) {
  std::vector<OutFrame> out;
  while (!q.empty()) q.TakeBatch(1, 0, &out);
  std::string tags;
  for (const OutFrame& f : out) tags += static_cast<char>(f.header[0]);
  return tags;
}

constexpr uint64_t kB = 512 * 1024;

TEST(SendQueue, InOrderWithoutAheadFrames) {
  SendQueue q;
  q.Push(Data('a', 1, 0, kB), SendQueue::Place::kBulk);
  q.Push(Control('r'), SendQueue::Place::kTail);
  q.Push(Data('b', 1, kB, kB), SendQueue::Place::kBulk);
  q.Push(Data('c', 1, 0, 4096), SendQueue::Place::kTail);
  EXPECT_EQ(Drain(q), "arbc");
}

TEST(SendQueue, AheadPassesBulkCopiesOfOtherBytes) {
  SendQueue q;
  q.Push(Data('a', 1, 0, kB), SendQueue::Place::kBulk);
  q.Push(Data('b', 1, kB, kB), SendQueue::Place::kBulk);
  q.Push(Data('c', 2, 5 * kB, kB), SendQueue::Place::kBulk);  // another image, same offset as F
  q.Push(Data('F', 1, 5 * kB, kB), SendQueue::Place::kAhead);
  EXPECT_EQ(Drain(q), "Fabc");
}

// I3: a write never lands before an earlier copy of the same bytes.
TEST(SendQueue, AheadStopsBehindACopyOfTheSameBytes) {
  SendQueue q;
  q.Push(Data('a', 1, 0, kB), SendQueue::Place::kBulk);
  q.Push(Data('b', 1, kB, kB), SendQueue::Place::kBulk);  // holds [kB, 2kB)
  q.Push(Data('c', 1, 2 * kB, kB), SendQueue::Place::kBulk);
  q.Push(Data('W', 1, kB + 8192, 4096), SendQueue::Place::kAhead);
  EXPECT_EQ(Drain(q), "abWc");
  // Touching ranges do not overlap: [kB, 2kB) and [2kB, 2kB+4096).
  q.Push(Data('b', 1, kB, kB), SendQueue::Place::kBulk);
  q.Push(Data('X', 1, 2 * kB, 4096), SendQueue::Place::kAhead);
  EXPECT_EQ(Drain(q), "Xb");
}

TEST(SendQueue, AheadPassesNoControlFrameAndNoOtherAheadFrame) {
  SendQueue q;
  q.Push(Data('a', 1, 0, kB), SendQueue::Place::kBulk);
  q.Push(Control('r'), SendQueue::Place::kTail);  // e.g. a resize: a barrier
  q.Push(Data('b', 1, kB, kB), SendQueue::Place::kBulk);
  q.Push(Data('F', 1, 3 * kB, kB), SendQueue::Place::kAhead);
  q.Push(Data('c', 1, 4 * kB, kB), SendQueue::Place::kBulk);
  q.Push(Data('G', 1, 6 * kB, 4096), SendQueue::Place::kAhead);  // passes c, not F
  q.Push(Data('m', 1, 7 * kB, 4096), SendQueue::Place::kTail);  // an async mirror write
  q.Push(Data('H', 1, 8 * kB, 4096), SendQueue::Place::kAhead);  // passes nothing
  EXPECT_EQ(Drain(q), "arFGbcmH");
}

TEST(SendQueue, BatchesTakeAtLeastOneFrameAndStopAtTheByteCap) {
  SendQueue q;
  q.Push(Data('a', 1, 0, kB), SendQueue::Place::kBulk);
  q.Push(Data('b', 1, kB, 4096), SendQueue::Place::kTail);
  q.Push(Data('c', 1, kB + 4096, 4096), SendQueue::Place::kTail);
  q.Push(Data('d', 1, kB + 8192, 4096), SendQueue::Place::kTail);
  const uint64_t all = q.bytes();
  EXPECT_EQ(all, 4 * wire::kHeaderSize + kB + 3 * 4096);
  std::vector<OutFrame> out;
  q.TakeBatch(64, 256 * 1024, &out);  // one frame already passes the cap
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(q.bytes(), all - out[0].WireBytes());
  out.clear();
  q.TakeBatch(2, 256 * 1024, &out);  // the frame cap
  EXPECT_EQ(out.size(), 2u);
  out.clear();
  q.TakeBatch(64, 256 * 1024, &out);
  EXPECT_EQ(out.size(), 1u);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.bytes(), 0u);
}

}  // namespace
}  // namespace migratefs::net
