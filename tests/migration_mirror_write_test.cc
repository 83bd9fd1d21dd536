// Phase 3's parallel mirrored write (issue 13 item 2): the peer's copy of a VM write
// is sent before the local pwrite, and the VM is acknowledged when both are done.
// What must hold: a local write that fails after the peer applied it is re-marked and
// resent, so both copies end equal (I2); writers hammering overlapping ranges while the
// sender still drains phase-2 bits never leave a stale block on the target (I3).
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include "tests/migration_fixture.h"

using namespace migratefs::testing;
using namespace std::chrono_literals;

namespace {

constexpr uint64_t kMiB = 1 << 20;

// The source's SRC is a 24 MiB tmpfs holding a 16 MiB image whose second half is a
// hole; once the tmpfs is full, writes into the hole fail locally with ENOSPC, after
// the peer got (and applied) them.
TEST_F(MigrationTest, LocalWriteFailingAfterThePeerAppliedItIsResent) {
  a_ = std::make_unique<Daemon>(*tmp_ / "a", a_cfg_);
  b_ = std::make_unique<Daemon>(*tmp_ / "b", b_cfg_);
  ASSERT_EQ(mount("tmpfs", a_->src().c_str(), "tmpfs", 0, "size=24m"), 0) << strerror(errno);
  WritePatternFile(a_->Src("vm.img"), 8 * kMiB, 51);
  ASSERT_EQ(truncate(a_->Src("vm.img").c_str(), off_t(16 * kMiB)), 0);
  ASSERT_TRUE(b_->Start());
  ASSERT_TRUE(a_->Start());
  std::string id = StartMigration({"vm.img"});
  ASSERT_TRUE(WaitForPhase(*a_, id, "mirror", 60s));
  // Fill the tmpfs (behind the mount: nothing of it migrates).
  {
    int fill = open(a_->Src("filler").c_str(), O_CREAT | O_WRONLY, 0600);
    ASSERT_GE(fill, 0);
    std::string chunk(64 * 1024, 'f');
    while (write(fill, chunk.data(), chunk.size()) > 0) {
    }
    close(fill);
  }
  int fd = open(a_->Mnt("vm.img").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  std::string data(256 * 1024, 'X');
  int errors = 0;
  for (int i = 0; i < 8; i++) {  // into the hole
    if (pwrite(fd, data.data(), data.size(), off_t(12 * kMiB + i * data.size())) < 0) errors++;
  }
  if (fdatasync(fd) != 0) errors++;
  close(fd);
  ASSERT_GT(errors, 0) << "no local write failed: the test proves nothing";
  ASSERT_EQ(unlink(a_->Src("filler").c_str()), 0);
  FinishAndCompare(id, {"vm.img"});
}

// Four threads write overlapping 64 KiB ranges of the same few blocks (straddling
// block edges) from phase 2 into phase 3, each write a distinct pattern.
TEST_F(MigrationTest, OverlappingWritersDuringMirroringLeaveNoStaleBlock) {
  StartDaemons();
  WritePatternFile(a_->Src("hot.img"), 8 * kMiB, 52);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> writes{0}, failures{0};
  std::vector<std::thread> hammers;
  for (int t = 0; t < 4; t++) {
    hammers.emplace_back([&, t] {
      int fd = open(a_->Mnt("hot.img").c_str(), O_WRONLY | O_DIRECT);
      if (fd < 0) {
        failures++;
        return;
      }
      void* mem = nullptr;
      if (posix_memalign(&mem, 4096, 64 * 1024) != 0) return;
      char* p = static_cast<char*>(mem);
      for (uint64_t i = 0; !stop.load(); i++) {
        memset(p, int((i * 4 + uint64_t(t)) & 0xff), 64 * 1024);
        const off_t off = off_t(512 * 1024 - 32 * 1024 + ((i + uint64_t(t)) % 8) * 16 * 1024);
        if (pwrite(fd, p, 64 * 1024, off) != 64 * 1024) failures++;
        writes++;
      }
      free(mem);
      close(fd);
    });
  }
  std::string id = StartMigration({"hot.img"}, 4000);
  ASSERT_TRUE(WaitForPhase(*a_, id, "bulk", 30s));
  a_->Request({{"op", "set_network_limit"}, {"id", id}, {"kbps", 0}});
  ASSERT_TRUE(WaitForPhase(*a_, id, "mirror", 60s));
  const uint64_t at_switch = writes.load();
  std::this_thread::sleep_for(1500ms);
  stop = true;
  for (auto& h : hammers) h.join();
  EXPECT_EQ(failures.load(), 0u);
  EXPECT_GT(writes.load(), at_switch + 100) << "too few writes in phase 3";
  FinishAndCompare(id, {"hot.img"});
}

// With a synchronous mirror every write goes to the peer as it happens and the dirty
// bitmap stays empty: the senders have nothing to do and must sleep until someone
// gives them work (net/migration/work_bell.h). Eight senders polling every 2 ms woke
// the source's worker ~3,500 times a second for nothing, on the cores the VM needs.
TEST_F(MigrationTest, IdleSendersSleepWhileTheMirrorLeavesNothingDirty) {
  StartDaemons();
  WritePatternFile(a_->Src("vm.img"), 8 * kMiB, 61);
  std::string id = StartMigration({"vm.img"});
  ASSERT_TRUE(WaitForPhase(*a_, id, "mirror", 60s));
  std::this_thread::sleep_for(500ms);  // the last drain's acks
  const pid_t worker = a_->WorkerPid();
  ASSERT_GT(worker, 0);
  const uint64_t before = VoluntaryContextSwitches(worker);
  std::this_thread::sleep_for(1s);
  const uint64_t woke = VoluntaryContextSwitches(worker) - before;
  EXPECT_LT(woke, 1000u) << "the source's threads woke " << woke << " times in 1 s of an idle phase 3";
  // Work still reaches them at once: a write while mirroring is acknowledged and the
  // copies end equal.
  int fd = open(a_->Mnt("vm.img").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  const std::string data(64 << 10, 'w');
  EXPECT_EQ(pwrite(fd, data.data(), data.size(), off_t(3 * kMiB)), ssize_t(data.size()));
  close(fd);
  FinishAndCompare(id, {"vm.img"});
}

}  // namespace

