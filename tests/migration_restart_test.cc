// Migrations across worker crashes (issue 14): the source's worker killed in every
// phase, the target's while it receives. The migration keeps its id, says it
// resumed, goes on from the target's copy, and ends byte-identical under a fio
// writer that never sees an error.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/migration_fixture.h"

namespace migratefs::testing {
namespace {

using namespace std::chrono_literals;

class MigrationRestartTest : public MigrationTest {
 protected:
  // The phase the source reports for `id` right now.
  std::string Phase(const std::string& id) { return Progress(id).value("phase", ""); }
};

TEST_F(MigrationRestartTest, SourceWorkerKilledInEveryPhaseResumesTheMigration) {
  if (!HaveTool("fio")) GTEST_SKIP() << "needs fio";
  StartDaemons();
  WritePatternFile(a_->Src("vm.img"), 256ull << 20, 7);
  const std::string fio_log = a_->Src("fio.log");
  pid_t fio = StartFio(a_->Mnt("vm.img"), 256, 40, "8m", fio_log);
  // 20 MB/s: bulk lasts long enough to be hit.
  const std::string id = StartMigration({"vm.img"}, 20000);
  ASSERT_TRUE(WaitForPhase(*a_, id, "bulk", 30s));
  int kills = 0;
  for (const char* phase : {"bulk", "dirty", "mirror"}) {
    if (std::string(phase) == "mirror") {
      a_->Request({{"op", "set_network_limit"}, {"id", id}, {"kbps", 0}});
    }
    ASSERT_TRUE(WaitForPhase(*a_, id, phase, 120s)) << phase;
    ASSERT_TRUE(a_->KillWorker9()) << "in " << phase;
    kills++;
    nlohmann::json p;
    ASSERT_TRUE(WaitFor(
        [&] {
          p = Progress(id);
          return p.value("ok", false) && p.value("resumed", 0) == kills;
        },
        10s))
        << "migration " << id << " not resumed after the kill in " << phase << ": " << p.dump();
  }
  a_->Request({{"op", "set_network_limit"}, {"id", id}, {"kbps", 0}});
  EXPECT_EQ(WaitPid(fio, 120s), 0) << "fio failed across the kills, or its verify found bad data; see " << fio_log;
  FinishAndCompare(id, {"vm.img"});
}

TEST_F(MigrationRestartTest, TargetWorkerKilledWhileReceivingDoesNotRestartTheCopy) {
  StartDaemons();
  WritePatternFile(a_->Src("disk.img"), 192ull << 20, 11);
  const std::string id = StartMigration({"disk.img"}, 30000);
  ASSERT_TRUE(WaitForPhase(*a_, id, "bulk", 30s));
  std::this_thread::sleep_for(2s);
  ASSERT_TRUE(b_->KillWorker9());
  std::this_thread::sleep_for(1s);
  ASSERT_TRUE(b_->KillWorker9());
  ASSERT_EQ(a_->Request({{"op", "set_network_limit"}, {"id", id}, {"kbps", 0}})["ok"], true);
  ASSERT_TRUE(WaitForCompletion(*a_, id, 180s));
  const uint64_t sent = Progress(id).value("bytes_sent", uint64_t(0));
  // The reconnect compares hashes; a restart from zero would send the image twice.
  EXPECT_LT(sent, 2 * (192ull << 20)) << "the copy restarted from zero";
  FinishAndCompare(id, {"disk.img"});
}

}  // namespace
}  // namespace migratefs::testing
