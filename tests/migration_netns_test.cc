// Migrations between daemons in two network namespaces joined by a veth pair: the
// test creates both namespaces and removes them. The link is cut for 30 s in the middle
// of the migration while a writer keeps going.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <set>
#include <thread>

#include "tests/migration_fixture.h"

namespace migratefs::testing {
namespace {

using namespace std::chrono_literals;
constexpr uint64_t kMiB = 1 << 20;

class NetnsMigration : public MigrationTest {
 protected:
  void SetUp() override {
    MigrationTest::SetUp();
    if (IsSkipped()) return;
    if (!HaveTool("ip") || !HaveTool("nsenter")) GTEST_SKIP() << "iproute2/nsenter missing";
    ns_ = std::make_unique<NetnsPair>();
    if (!ns_->ok()) GTEST_SKIP() << "cannot create network namespaces here";
    target_addr_ = ns_->addr_b() + ":7700";
    a_cfg_.netns = ns_->a();
    b_cfg_.netns = ns_->b();
    b_cfg_.listen = target_addr_;
  }
  void TearDown() override {
    MigrationTest::TearDown();
    ns_.reset();
  }
  std::unique_ptr<NetnsPair> ns_;
};

TEST_F(NetnsMigration, MigratesAcrossTheVethPair) {
  StartDaemons();
  WritePatternFile(a_->Src("vm.img"), 32 * kMiB, 21);
  std::string id = StartMigration({"vm.img"});
  FinishAndCompare(id, {"vm.img"});
}

TEST_F(NetnsMigration, LinkCutFor30sPausesThenResumesWhileTheVmWrites) {
  if (!HaveTool("fio")) GTEST_SKIP() << "fio missing";
  StartDaemons();
  WritePatternFile(a_->Src("vm.img"), 64 * kMiB, 22);
  std::string log = *tmp_ / "fio.log";
  pid_t fio = Spawn({"fio", "--name=vm", "--filename=" + a_->Mnt("vm.img"), "--size=64M", "--rw=randwrite",
                     "--bsrange=4k-128k", "--direct=1", "--ioengine=libaio", "--iodepth=4", "--time_based=1",
                     "--runtime=45", "--rate=5m", "--verify=crc32c", "--verify_backlog=64", "--verify_fatal=1",
                     "--verify_state_save=0"},
                    "", log);
  std::string id = StartMigration({"vm.img"}, 8000);
  ASSERT_TRUE(WaitForPhase(*a_, id, "bulk", 30s));
  std::this_thread::sleep_for(2s);
  ns_->LinkDown();
  // Whether TCP rides out the outage or the peer's I/O timeout declares the connection
  // dead and the migration pauses and reconnects, the VM must not notice. Nor may the
  // migration switch to mirroring over the dead link (issue 17.4: the decaying send
  // rate once looked like "no convergence" 1.6 s into a cut).
  std::set<std::string> phases_during_cut;
  for (auto until = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < until;) {
    phases_during_cut.insert(Progress(id).value("phase", ""));
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(phases_during_cut.count("mirror"), 0u) << "switched to mirroring while the link was down";
  auto during = Progress(id);
  ns_->LinkUp();
  std::string phase = during.value("phase", "");
  EXPECT_TRUE(phase == "bulk" || phase == "dirty" || phase == "paused") << during.dump();
  a_->Request({{"op", "set_network_limit"}, {"id", id}, {"kbps", 0}});
  EXPECT_EQ(WaitPid(fio, 120s), 0) << "a VM write failed while the link was down; see " << log;
  FinishAndCompare(id, {"vm.img"});
}

// The link dies while mirroring: the VM's writes wait for the peer at most a few
// seconds (the stall watchdog), then are acknowledged locally; the migration pauses,
// resumes when the link is back, and ends identical.
TEST_F(NetnsMigration, LinkCutWhileMirroringDoesNotHangTheVm) {
  StartDaemons();
  WritePatternFile(a_->Src("m.img"), 16 * kMiB, 23);
  std::string id = StartMigration({"m.img"});
  ASSERT_TRUE(WaitForCompletion(*a_, id, 30s));
  std::atomic<bool> stop{false};
  std::atomic<int64_t> worst_ms{0};
  std::atomic<uint64_t> failures{0}, writes{0};
  std::thread writer([&] {
    int fd = open(a_->Mnt("m.img").c_str(), O_WRONLY | O_DIRECT);
    void* mem;
    if (fd < 0 || posix_memalign(&mem, 4096, 4096) != 0) {
      failures++;
      return;
    }
    for (uint64_t i = 0; !stop.load(); i++) {
      std::memset(mem, int(i), 4096);
      auto t0 = std::chrono::steady_clock::now();
      if (pwrite(fd, mem, 4096, off_t((i * 7919 % 4096) * 4096)) != 4096) failures++;
      int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
      worst_ms.store(std::max(worst_ms.load(), ms));
      writes++;
      std::this_thread::sleep_for(5ms);
    }
    free(mem);
    close(fd);
  });
  std::this_thread::sleep_for(1s);
  ns_->LinkDown();
  std::this_thread::sleep_for(12s);
  uint64_t during = writes.load();
  ns_->LinkUp();
  std::this_thread::sleep_for(1s);
  stop = true;
  writer.join();
  EXPECT_EQ(failures.load(), 0u);
  EXPECT_LT(worst_ms.load(), 10000) << "a VM write hung while the link was down";
  EXPECT_GT(during, 100u) << "the VM barely wrote while the link was down";
  FinishAndCompare(id, {"m.img"});
}

}  // namespace
}  // namespace migratefs::testing
