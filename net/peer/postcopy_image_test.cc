#include "net/peer/postcopy_image.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>
#include <vector>

namespace migratefs::net {
namespace {

using namespace std::chrono_literals;
constexpr uint32_t kBs = 4096;

// A map with the given blocks remote.
std::string Map(uint64_t blocks, std::vector<uint64_t> remote) {
  std::string m((blocks + 7) / 8, '\0');
  for (uint64_t b : remote) m[b / 8] = char(uint8_t(m[b / 8]) | (1u << (b % 8)));
  return m;
}

struct Fetches {
  std::mutex mu;
  std::vector<std::pair<uint64_t, uint64_t>> asked;
  PostcopyImage::FetchFn Fn() {
    return [this](uint64_t first, uint64_t count) {
      std::lock_guard<std::mutex> lock(mu);
      asked.emplace_back(first, count);
    };
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return asked.size();
  }
};

void Arrive(PostcopyImage& p, uint64_t block) {
  ASSERT_TRUE(p.BeginArrival(block));
  p.EndArrival(block, true);
}

TEST(PostcopyImage, ReadOfRemoteBlockFetchesAndWaitsForIt) {
  PostcopyImage p("a.img", 8 * kBs, kBs, Map(8, {2, 3}), 10s);
  Fetches f;
  p.Bind(f.Fn());
  EXPECT_EQ(p.BeforeRead(0, 2 * kBs), 0);  // local blocks: no wait, no fetch
  EXPECT_EQ(f.size(), 0u);
  auto reader = std::async(std::launch::async, [&] { return p.BeforeRead(2 * kBs + 100, 2 * kBs); });
  while (f.size() == 0) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(f.asked[0], std::make_pair(uint64_t(2), uint64_t(2)));  // one request for the run
  EXPECT_EQ(reader.wait_for(50ms), std::future_status::timeout);
  Arrive(p, 2);
  EXPECT_EQ(reader.wait_for(50ms), std::future_status::timeout);  // block 3 is still remote
  Arrive(p, 3);
  EXPECT_EQ(reader.get(), 0);
  EXPECT_TRUE(p.AllLocal());
  const IncomingInfo info = p.Info();
  EXPECT_EQ(info.bytes_fetched_on_demand, 2u * kBs);
  EXPECT_EQ(info.bytes_pulled, 0u);
  EXPECT_EQ(info.fetches, 1u);
  EXPECT_GT(info.fetch_latency_p99_ms, 0);
}

TEST(PostcopyImage, WholeBlockWriteClaimsTheBlockAndItsArrivalIsDropped) {
  PostcopyImage p("a.img", 8 * kBs, kBs, Map(8, {1, 2, 3}), 10s);
  Fetches f;
  p.Bind(f.Fn());
  // Blocks 1 and 2 covered whole; block 3 only in part: fetched.
  auto writer = std::async(std::launch::async, [&] { return p.BeforeChange(kBs, 2 * kBs + 10); });
  while (f.size() == 0) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(f.asked[0], std::make_pair(uint64_t(3), uint64_t(1)));
  EXPECT_FALSE(p.BeginArrival(1));  // the VM's bytes win
  EXPECT_FALSE(p.BeginArrival(2));
  Arrive(p, 3);
  EXPECT_EQ(writer.get(), 0);
  EXPECT_TRUE(p.AllLocal());
}

TEST(PostcopyImage, WriteWaitsForABlockBeingWritten) {
  PostcopyImage p("a.img", 4 * kBs, kBs, Map(4, {0}), 10s);
  ASSERT_TRUE(p.BeginArrival(0));  // the source's copy is being written
  auto writer = std::async(std::launch::async, [&] { return p.BeforeChange(0, kBs); });
  EXPECT_EQ(writer.wait_for(50ms), std::future_status::timeout);  // never before it lands (I3)
  p.EndArrival(0, true);
  EXPECT_EQ(writer.get(), 0);
}

TEST(PostcopyImage, ShortLastBlockWrittenToItsEndIsWhole) {
  PostcopyImage p("a.img", 2 * kBs + 100, kBs, Map(3, {2}), 10s);
  EXPECT_EQ(p.BeforeChange(2 * kBs, 100), 0);  // no fetch, no wait
  EXPECT_TRUE(p.AllLocal());
}

TEST(PostcopyImage, TruncateCutsOffRemoteBlocksAndFetchesTheOneItSplits) {
  PostcopyImage p("a.img", 8 * kBs, kBs, Map(8, {3, 5, 6}), 10s);
  Fetches f;
  p.Bind(f.Fn());
  auto t = std::async(std::launch::async, [&] { return p.BeforeChange(3 * kBs + 1, 0); });
  while (f.size() == 0) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(f.asked[0], std::make_pair(uint64_t(3), uint64_t(1)));
  EXPECT_FALSE(p.BeginArrival(5));
  EXPECT_FALSE(p.BeginArrival(6));
  Arrive(p, 3);
  EXPECT_EQ(t.get(), 0);
  EXPECT_TRUE(p.AllLocal());
}

TEST(PostcopyImage, ReadersWaitWhileUnboundAndAreAskedAgainOnTheNextConnection) {
  PostcopyImage p("a.img", 4 * kBs, kBs, Map(4, {1}), 10s);
  auto reader = std::async(std::launch::async, [&] { return p.BeforeRead(kBs, 1); });
  EXPECT_EQ(reader.wait_for(50ms), std::future_status::timeout);
  Fetches f;
  p.Bind(f.Fn());
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f.asked[0].first, 1u);
  Arrive(p, 1);
  EXPECT_EQ(reader.get(), 0);
}

TEST(PostcopyImage, FailedWriteMakesTheBlockRemoteAgain) {
  PostcopyImage p("a.img", 4 * kBs, kBs, Map(4, {1}), 10s);
  ASSERT_TRUE(p.BeginArrival(1));
  p.EndArrival(1, false);
  EXPECT_FALSE(p.AllLocal());
  EXPECT_TRUE(p.BeginArrival(1));  // the resend is written
}

TEST(PostcopyImage, NoArrivalForTheTimeoutFailsRemoteReadsWithEio) {
  std::atomic<int64_t> now_ms{0};
  PostcopyImage p("a.img", 4 * kBs, kBs, Map(4, {1, 2}), 1000ms);
  p.SetClockForTest([&] { return PostcopyImage::Clock::time_point(std::chrono::milliseconds(now_ms.load())); });
  // The clock is set after construction: the hand-over counts from 0.
  auto reader = std::async(std::launch::async, [&] { return p.BeforeRead(kBs, 1); });
  EXPECT_EQ(reader.wait_for(150ms), std::future_status::timeout);  // waits, never zeros
  now_ms = 999;
  EXPECT_EQ(reader.wait_for(150ms), std::future_status::timeout);
  now_ms = 1001;
  EXPECT_EQ(reader.get(), EIO);
  EXPECT_EQ(p.BeforeRead(2 * kBs, 1), EIO);  // at once from now on
  EXPECT_EQ(p.BeforeRead(0, 1), 0);          // local blocks still read
  EXPECT_EQ(p.Info().state, "failed");
  EXPECT_NE(p.Info().reason.find("postcopy_timeout"), std::string::npos);
  Arrive(p, 2);  // a source that comes back still fills the copy
  EXPECT_EQ(p.BeforeRead(2 * kBs, 1), 0);
}

TEST(PostcopyImage, BlocksBeyondTheHandOverAreLocal) {
  PostcopyImage p("a.img", 2 * kBs, kBs, Map(2, {0, 1}), 10s);
  EXPECT_EQ(p.BeforeRead(5 * kBs, kBs), 0);
  EXPECT_FALSE(p.BeginArrival(7));
  EXPECT_EQ(p.CheckNamespaceChange(), EBUSY);
  EXPECT_TRUE(p.HidesData());
  Arrive(p, 0);
  Arrive(p, 1);
  EXPECT_EQ(p.CheckNamespaceChange(), 0);
  EXPECT_FALSE(p.HidesData());
  EXPECT_EQ(p.Info().bytes_pulled, 2u * kBs);
}

}  // namespace
}  // namespace migratefs::net

namespace migratefs::net {
namespace {

// A half-failed hand-over gives the copy back only to the source that handed it over,
// and only while nothing here has opened it for writing or changed it; once given
// back, opens for writing and changes are refused.
TEST(PostcopyImage, GivenBackOnlyToItsSourceAndOnlyIfTheVmNeverUsedIt) {
  PostcopyImage unused("a.img", 4 * kBs, kBs, Map(4, {1}), 10s);
  unused.SetHandedOverBy("src-1");
  EXPECT_FALSE(unused.GiveBack("src-2"));
  EXPECT_FALSE(unused.GiveBack(""));
  EXPECT_TRUE(unused.GiveBack("src-1"));
  EXPECT_EQ(unused.CheckWriteOpen(), EBUSY);
  EXPECT_EQ(unused.BeforeChange(0, kBs), EBUSY);

  PostcopyImage opened("b.img", 4 * kBs, kBs, Map(4, {1}), 10s);
  opened.SetHandedOverBy("src-1");
  EXPECT_EQ(opened.CheckWriteOpen(), 0);  // the VM opened it here
  EXPECT_FALSE(opened.GiveBack("src-1"));

  PostcopyImage written("c.img", 4 * kBs, kBs, Map(4, {1}), 10s);
  written.SetHandedOverBy("src-1");
  EXPECT_EQ(written.BeforeChange(2 * kBs, kBs), 0);  // a write to a local block
  EXPECT_FALSE(written.GiveBack("src-1"));

  PostcopyImage restored("d.img", 4 * kBs, kBs, Map(4, {1}), 10s);  // from a map: no source known
  EXPECT_FALSE(restored.GiveBack("src-1"));
}

}  // namespace
}  // namespace migratefs::net
