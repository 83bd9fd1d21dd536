// Asynchronous mirroring (issue 12): with "mirror":"async" the VM's writes in phase 3
// are acknowledged once they are on the source disk and queued for the target, while
// the backlog stays under its high mark; above it they wait for the target again
// until it drained below the low mark. The target is slowed or stalled by a relay in
// user space (tests/harness/throttled_proxy.h). Every test ends byte for byte.
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>

#include "tests/harness/throttled_proxy.h"
#include "tests/migration_fixture.h"

using namespace migratefs::testing;
using namespace std::chrono_literals;

namespace {

constexpr uint64_t kMiB = 1 << 20;

class AsyncMirrorTest : public MigrationTest {
 protected:
  // Daemons, then a relay in front of the target; migrations go through the relay.
  void StartWithRelay() {
    StartDaemons();
    const int target_port = std::stoi(target_addr_.substr(target_addr_.rfind(':') + 1));
    proxy_ = std::make_unique<ThrottledProxy>(target_port);
    target_addr_ = proxy_->address();
  }

  std::string StartAsync(const std::string& image, uint64_t backlog_max) {
    auto r = a_->Request({{"op", "start"},
                          {"images", {image}},
                          {"target", target_addr_},
                          {"mirror", "async"},
                          {"backlog_max_bytes", backlog_max},
                          {"backlog_low_pct", 10},
                          {"backlog_high_pct", 60}});
    EXPECT_TRUE(r.value("ok", false)) << r.dump();
    return r.value("id", "");
  }

  void TearDown() override {
    proxy_.reset();
    MigrationTest::TearDown();
  }

  std::unique_ptr<ThrottledProxy> proxy_;
};

// fio --verify writes through every phase; in phase 3 the target is slowed to a
// tenth of the writer's rate, so the backlog fills, writes turn synchronous, and once
// the target is fast again the backlog drains and writes are asynchronous again.
TEST_F(AsyncMirrorTest, BacklogFillsUnderASlowTargetAndDrains) {
  if (!HaveTool("fio")) GTEST_SKIP() << "fio missing";
  StartWithRelay();
  WritePatternFile(a_->Src("vm.img"), 64 * kMiB, 41);
  std::string log = *tmp_ / "fio.log";
  pid_t fio = StartFio(a_->Mnt("vm.img"), 64, 20, "10m", log);
  std::string id = StartAsync("vm.img", 8 * kMiB);
  ASSERT_TRUE(WaitForPhase(*a_, id, "mirror", 60s));
  EXPECT_EQ(Progress(id).value("mirror_mode", ""), "async") << Progress(id).dump();
  proxy_->SetRate(1'000'000);
  std::set<std::string> modes;
  uint64_t max_backlog = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto p = Progress(id);
        modes.insert(p.value("mirror_mode", ""));
        max_backlog = std::max(max_backlog, p.value("backlog_bytes", uint64_t(0)));
        return modes.count("async-throttled") > 0;
      },
      30s))
      << Progress(id).dump();
  // Bounded: the high mark (60 % of 8 MiB) plus the writes in flight when it was passed.
  EXPECT_LT(max_backlog, 8 * kMiB) << Progress(id).dump();
  auto c = a_->Request({{"op", "query_completion"}, {"id", id}});
  proxy_->SetRate(0);
  ASSERT_TRUE(WaitFor([&] { return Progress(id).value("mirror_mode", "") == "async"; }, 30s)) << Progress(id).dump();
  auto p = Progress(id);
  EXPECT_GT(p.value("mirror_sync_s", 0.0), 0.0) << p.dump();
  EXPECT_EQ(p.value("backlog_max_bytes", uint64_t(0)), 8 * kMiB);
  EXPECT_EQ(WaitPid(fio, 60s), 0) << "fio failed or its verify found bad data; see " << log;
  FinishAndCompare(id, {"vm.img"});
  EXPECT_EQ(Progress(id).value("backlog_bytes", uint64_t(1)), 0u) << "finish returned with a backlog";
}

// A guest flush waits until every write before it is on the target: with the target
// slowed to 1 MB/s and ~4 MiB acknowledged but still queued, fsync takes seconds, and
// when it returns the target's file holds the data (the last of several overlapping
// writes of the same range: order is kept).
TEST_F(AsyncMirrorTest, FlushWaitsForTheBacklogAndOverlappingWritesKeepTheirOrder) {
  StartWithRelay();
  WritePatternFile(a_->Src("f.img"), 16 * kMiB, 42);
  std::string id = StartAsync("f.img", 32 * kMiB);
  ASSERT_TRUE(WaitForPhase(*a_, id, "mirror", 60s));
  proxy_->SetRate(1'000'000);
  int fd = open(a_->Mnt("f.img").c_str(), O_RDWR | O_DIRECT);  // each write reaches the daemon
  ASSERT_GE(fd, 0);
  void* mem = nullptr;
  ASSERT_EQ(posix_memalign(&mem, 4096, kMiB), 0);
  char* buf = static_cast<char*>(mem);
  auto t0 = std::chrono::steady_clock::now();
  for (int round = 0; round < 4; round++) {  // the same 1 MiB range four times
    memset(buf, 'a' + round, kMiB);
    ASSERT_EQ(pwrite(fd, buf, kMiB, off_t(2 * kMiB)), ssize_t(kMiB));
  }
  auto written = std::chrono::steady_clock::now() - t0;
  auto backlog = Progress(id).value("backlog_bytes", uint64_t(0));
  ASSERT_EQ(fdatasync(fd), 0);
  auto queued = std::chrono::steady_clock::now() - t0;
  free(mem);
  std::string block(kMiB, 'd');
  EXPECT_EQ(Progress(id).value("mirror_mode", ""), "async") << Progress(id).dump();
  EXPECT_GT(backlog, 2 * kMiB) << "the writes were not left queued";
  close(fd);
  // Data the flush covered is on the target now.
  std::string got(block.size(), '\0');
  int tfd = open(b_->Src("f.img").c_str(), O_RDONLY);
  ASSERT_GE(tfd, 0);
  ASSERT_EQ(pread(tfd, got.data(), got.size(), off_t(2 * kMiB)), ssize_t(got.size()));
  close(tfd);
  EXPECT_TRUE(got == std::string(block.size(), 'd')) << "the target holds an older write (first byte '" << got[0] << "')";
  EXPECT_GE(std::chrono::duration<double>(queued).count(), 2.0)
      << "4 MiB at 1 MB/s: the flush cannot have waited for the target";
  EXPECT_LT(written, queued - written) << "the writes themselves waited for the target (not asynchronous)";
  proxy_->SetRate(0);
  FinishAndCompare(id, {"f.img"});
}

// kill -9 of the target with a full backlog: the VM's writes go on (I4), the unshipped
// backlog becomes dirty bits, and the migration resumes and ends identical.
TEST_F(AsyncMirrorTest, TargetKilledWithAFullBacklogResumesIdentical) {
  if (!HaveTool("fio")) GTEST_SKIP() << "fio missing";
  StartWithRelay();
  WritePatternFile(a_->Src("k.img"), 64 * kMiB, 43);
  std::string log = *tmp_ / "fio.log";
  pid_t fio = StartFio(a_->Mnt("k.img"), 64, 15, "10m", log);
  std::string id = StartAsync("k.img", 16 * kMiB);
  ASSERT_TRUE(WaitForPhase(*a_, id, "mirror", 60s));
  proxy_->SetRate(500'000);
  ASSERT_TRUE(WaitFor([&] { return Progress(id).value("backlog_bytes", uint64_t(0)) > 4 * kMiB; }, 30s))
      << Progress(id).dump();
  b_->Kill9();
  ASSERT_TRUE(WaitForPhase(*a_, id, "paused", 60s));
  EXPECT_GT(Progress(id).value("dirty_blocks", uint64_t(0)), 0u) << "the lost backlog was not re-marked";
  proxy_->SetRate(0);
  ASSERT_TRUE(b_->Start());
  EXPECT_EQ(WaitPid(fio, 90s), 0) << "a VM write failed; see " << log;
  FinishAndCompare(id, {"k.img"});
  EXPECT_LT(Progress(id).value("bytes_sent", uint64_t(0)), 64 * kMiB * 3) << "restarted from zero";
}

// set_mirror_mode switches a running migration both ways; bad values change nothing.
TEST_F(AsyncMirrorTest, SetMirrorModeLiveAndBadValuesAreRefused) {
  StartDaemons();
  WritePatternFile(a_->Src("s.img"), 8 * kMiB, 44);
  std::string id = StartMigration({"s.img"});
  ASSERT_TRUE(WaitForPhase(*a_, id, "mirror", 60s));
  EXPECT_EQ(Progress(id).value("mirror_mode", ""), "sync");
  auto bad = a_->Request({{"op", "set_mirror_mode"}, {"id", id}, {"mirror", "async"}, {"backlog_low_pct", 80},
                          {"backlog_high_pct", 70}});
  EXPECT_FALSE(bad.value("ok", true)) << bad.dump();
  EXPECT_EQ(bad["error"].value("code", ""), "invalid_argument") << bad.dump();
  auto typo = a_->Request({{"op", "set_mirror_mode"}, {"id", id}, {"mirror", "sync"}, {"backlog_max_bytes", 1}});
  EXPECT_EQ(typo["error"].value("code", ""), "bad_request") << typo.dump();
  EXPECT_EQ(Progress(id).value("mirror_mode", ""), "sync");
  auto ok = a_->Request({{"op", "set_mirror_mode"}, {"id", id}, {"mirror", "async"}});
  ASSERT_TRUE(ok.value("ok", false)) << ok.dump();
  EXPECT_EQ(Progress(id).value("mirror_mode", ""), "async");
  EXPECT_EQ(Progress(id).value("backlog_max_bytes", uint64_t(0)), 64 * kMiB);
  int fd = open(a_->Mnt("s.img").c_str(), O_RDWR | O_DIRECT);
  ASSERT_GE(fd, 0);
  void* buf = nullptr;
  ASSERT_EQ(posix_memalign(&buf, 4096, 65536), 0);
  memset(buf, 'z', 65536);
  for (int i = 0; i < 32; i++) ASSERT_EQ(pwrite(fd, buf, 65536, off_t(i) * 65536), 65536);
  free(buf);
  close(fd);
  ASSERT_TRUE(a_->Request({{"op", "set_mirror_mode"}, {"id", id}, {"mirror", "sync"}}).value("ok", false));
  EXPECT_EQ(Progress(id).value("mirror_mode", ""), "sync");
  FinishAndCompare(id, {"s.img"});
}

}  // namespace
