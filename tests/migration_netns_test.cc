// Migrations between daemons in two network namespaces joined by a veth pair: the
// test creates both namespaces and removes them. The link is cut for 30 s in the middle
// of the migration while a writer keeps going.
#include <fcntl.h>
#include <unistd.h>

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
                     "--runtime=45", "--rate=5m", "--verify=crc32c", "--verify_backlog=64", "--verify_fatal=1"},
                    "", log);
  std::string id = StartMigration({"vm.img"}, 8000);
  ASSERT_TRUE(WaitForPhase(*a_, id, "bulk", 30s));
  std::this_thread::sleep_for(2s);
  ns_->LinkDown();
  // Whether TCP rides out the outage or the peer's I/O timeout declares the connection
  // dead and the migration pauses and reconnects, the VM must not notice.
  std::this_thread::sleep_for(30s);
  auto during = Progress(id);
  ns_->LinkUp();
  std::string phase = during.value("phase", "");
  EXPECT_TRUE(phase == "bulk" || phase == "dirty" || phase == "paused") << during.dump();
  a_->Request({{"op", "set_network_limit"}, {"id", id}, {"kbps", 0}});
  EXPECT_EQ(WaitPid(fio, 120s), 0) << "a VM write failed while the link was down; see " << log;
  FinishAndCompare(id, {"vm.img"});
}

}  // namespace
}  // namespace migratefs::testing
