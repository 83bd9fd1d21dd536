// End-to-end migrations between two real daemons on loopback: real FUSE mounts, real
// TCP, real writers (fio --verify, qemu-io), a byte-for-byte comparison at the end of
// every test.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <set>
#include <thread>

#include "tests/harness/throttled_proxy.h"
#include "tests/migration_fixture.h"

namespace migratefs::testing {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kMiB = 1 << 20;

TEST_F(MigrationTest, FioWritesThroughAllThreePhasesEndIdentical) {
  if (!HaveTool("fio")) GTEST_SKIP() << "fio missing";
  StartDaemons();
  WritePatternFile(a_->Src("vm.img"), 128 * kMiB, 1);
  std::string log = *tmp_ / "fio.log";
  pid_t fio = StartFio(a_->Mnt("vm.img"), 128, 12, "20m", log);
  std::this_thread::sleep_for(1s);
  // 40 MB/s: phase 1 of 128 MiB takes ~3 s while fio keeps dirtying blocks.
  std::string id = StartMigration({"vm.img"}, 40000);
  std::set<std::string> seen;
  WaitFor(
      [&] {
        seen.insert(Progress(id).value("phase", ""));
        return seen.count("mirror") > 0;
      },
      60s);
  EXPECT_TRUE(seen.count("bulk") || seen.count("connecting")) << "phase 1 never observed";
  ASSERT_TRUE(seen.count("mirror")) << Progress(id).dump();
  a_->Request({{"op", "set_network_limit"}, {"id", id}, {"kbps", 0}});
  EXPECT_EQ(WaitPid(fio, 60s), 0) << "fio failed or its verify found bad data; see " << log;
  FinishAndCompare(id, {"vm.img"});
}

TEST_F(MigrationTest, QemuIoWritesDuringMirroringAreOnTheTarget) {
  if (!HaveTool("qemu-io") || !HaveTool("qemu-img")) GTEST_SKIP() << "qemu-utils missing";
  StartDaemons();
  ASSERT_EQ(RunCmd({"qemu-img", "create", "-q", "-f", "qcow2", a_->Mnt("disk.qcow2"), "256M"}), 0);
  ASSERT_EQ(RunCmd({"qemu-io", "-n", "-f", "qcow2", "-t", "none", "-c", "write -P 0x11 0 4M", a_->Mnt("disk.qcow2")}), 0);
  std::string id = StartMigration({"disk.qcow2"});
  ASSERT_TRUE(WaitForCompletion(*a_, id, 60s));
  EXPECT_EQ(Progress(id).value("phase", ""), "mirror");
  // Phase 3: each write is applied on both hosts before qemu-io sees it complete; the
  // qcow2 grows (new clusters) while mirrored.
  for (int i = 0; i < 8; i++) {
    std::string cmd = "write -P 0x" + std::to_string(20 + i) + " " + std::to_string(i * 16) + "M 1M";
    ASSERT_EQ(RunCmd({"qemu-io", "-n", "-f", "qcow2", "-t", "none", "-c", cmd, a_->Mnt("disk.qcow2")}), 0) << cmd;
  }
  FinishAndCompare(id, {"disk.qcow2"});
  EXPECT_EQ(RunCmd({"qemu-img", "compare", "-q", a_->Src("disk.qcow2"), b_->Src("disk.qcow2")}), 0);
  EXPECT_EQ(RunCmd({"qemu-img", "check", "-q", b_->Src("disk.qcow2")}), 0);
  EXPECT_EQ(RunCmd({"qemu-io", "-n", "-f", "qcow2", "-c", "read -P 0x27 112M 1M", b_->Src("disk.qcow2")}), 0);
}

TEST_F(MigrationTest, ImageGrowsAndShrinksDuringMigration) {
  StartDaemons();
  WritePatternFile(a_->Src("grow.img"), 32 * kMiB, 2);
  std::string id = StartMigration({"grow.img"}, 20000);
  ASSERT_TRUE(WaitForPhase(*a_, id, "bulk", 20s));
  ASSERT_EQ(truncate(a_->Mnt("grow.img").c_str(), 48 * kMiB), 0);  // grow during phase 1
  int fd = open(a_->Mnt("grow.img").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  std::vector<char> buf(kMiB, 'g');
  ASSERT_EQ(pwrite(fd, buf.data(), buf.size(), 47 * kMiB), ssize_t(kMiB));
  ASSERT_EQ(ftruncate(fd, 20 * kMiB + 12345), 0);  // shrink to an unaligned size
  a_->Request({{"op", "set_network_limit"}, {"id", id}, {"kbps", 0}});
  ASSERT_TRUE(WaitForPhase(*a_, id, "mirror", 60s));
  ASSERT_EQ(ftruncate(fd, 64 * kMiB), 0);  // grow while mirroring
  ASSERT_EQ(pwrite(fd, buf.data(), buf.size(), 60 * kMiB), ssize_t(kMiB));
  ASSERT_EQ(ftruncate(fd, 61 * kMiB + 7), 0);  // and shrink again
  ASSERT_EQ(fsync(fd), 0);
  close(fd);
  FinishAndCompare(id, {"grow.img"});
}

// On a link slower than the sender fills its in-flight window, senders wait for room.
// Such a wait used to give its claimed block up after 200 ms although the scan had
// moved past it, so the block waited for the next pass: phase 1 "ended" (the scan
// wrapped) with a third of a WAN image sent (bench/hybrid). Without a writer, phase 1
// must cover the whole image: when the phase changes, at most the window is unacked.
TEST_F(MigrationTest, PhaseOneOnASlowLinkSendsEveryBlockBeforeItEnds) {
  StartDaemons();
  ThrottledProxy proxy(std::stoi(target_addr_.substr(target_addr_.rfind(':') + 1)));
  proxy.SetRate(8 << 20);  // 8 MiB/s: the 16 MiB window is two seconds of link
  const uint64_t size = 64 * kMiB;
  WritePatternFile(a_->Src("vm.img"), size, 17);
  auto started = a_->Request({{"op", "start"}, {"images", {"vm.img"}}, {"target", proxy.address()}});
  ASSERT_TRUE(started.value("ok", false)) << started.dump();
  const std::string id = started["id"];
  nlohmann::json at_switch;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto p = Progress(id);
        const std::string phase = p.value("phase", "");
        if (phase == "connecting" || phase == "bulk") return false;
        at_switch = p;
        return true;
      },
      60s));
  const uint64_t sent = at_switch.value("bytes_sent", uint64_t(0));
  // Unacknowledged at the switch: the 16 MiB window, plus per sender (8) one block that
  // passed the window check alongside the others and one claimed while waiting.
  EXPECT_GE(sent, size - 24 * kMiB) << "phase 1 ended with blocks never sent: " << at_switch.dump();
  proxy.SetRate(0);
  FinishAndCompare(id, {"vm.img"});
}

TEST_F(MigrationTest, SparseImageStaysSparseOnTheTarget) {
  StartDaemons();
  std::string path = a_->Src("sparse.img");
  int fd = open(path.c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 4096 * kMiB), 0);  // 4 GiB apparent
  std::vector<char> buf(2 * kMiB, 'x');
  for (uint64_t off : {uint64_t(0), 1000 * kMiB, 4094 * kMiB}) ASSERT_EQ(pwrite(fd, buf.data(), buf.size(), off_t(off)), ssize_t(buf.size()));
  // An all-zero data block is not shipped as data either.
  std::vector<char> zeros(kMiB, 0);
  ASSERT_EQ(pwrite(fd, zeros.data(), zeros.size(), 2000 * kMiB), ssize_t(kMiB));
  close(fd);
  std::string id = StartMigration({"sparse.img"});
  FinishAndCompare(id, {"sparse.img"});
  struct stat st;
  ASSERT_EQ(stat(b_->Src("sparse.img").c_str(), &st), 0);
  EXPECT_LE(uint64_t(st.st_blocks) * 512, 8 * kMiB) << "target copy is not sparse";
  auto p = Progress(id);
  EXPECT_LE(p.value("bytes_sent", uint64_t(0)), 8 * kMiB) << p.dump();
  int tfd = open(b_->Src("sparse.img").c_str(), O_RDONLY);
  EXPECT_EQ(lseek(tfd, 2 * kMiB, SEEK_HOLE), off_t(2 * kMiB));
  close(tfd);
}

// One block rewritten as fast as possible while the migration crosses from phase 2 to
// phase 3: a stale resend landing after a newer mirrored write would leave an old
// counter value on the target (invariant I3).
TEST_F(MigrationTest, HammeredBlockAcrossThePhaseSwitchIsNeverStale) {
  StartDaemons();
  WritePatternFile(a_->Src("hot.img"), 16 * kMiB, 3);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> writes{0}, failures{0};
  std::thread hammer([&] {
    int fd = open(a_->Mnt("hot.img").c_str(), O_WRONLY | O_DIRECT);
    if (fd < 0) {
      failures++;
      return;
    }
    void* mem;
    posix_memalign(&mem, 4096, 64 * 1024);
    char* p = static_cast<char*>(mem);
    for (uint64_t i = 0; !stop.load(); i++) {
      std::memset(p, int(i & 0xff), 64 * 1024);
      std::memcpy(p, &i, sizeof(i));
      // Two offsets in one 512 KiB block and one straddling two blocks.
      off_t offs[] = {off_t(3 * 512 * 1024), off_t(3 * 512 * 1024 + 256 * 1024), off_t(6 * 512 * 1024 - 32 * 1024)};
      if (pwrite(fd, p, 64 * 1024, offs[i % 3]) != 64 * 1024) failures++;
      writes++;
    }
    free(mem);
    close(fd);
  });
  std::string id = StartMigration({"hot.img"}, 8000);
  ASSERT_TRUE(WaitForPhase(*a_, id, "bulk", 30s));
  uint64_t during_bulk = writes.load();
  a_->Request({{"op", "set_network_limit"}, {"id", id}, {"kbps", 0}});
  ASSERT_TRUE(WaitForPhase(*a_, id, "mirror", 60s));
  uint64_t at_switch = writes.load();
  std::this_thread::sleep_for(1s);
  stop = true;
  EXPECT_GT(at_switch, during_bulk) << "the hammer did not run across phases 1-2";
  hammer.join();
  EXPECT_EQ(failures.load(), 0u);
  EXPECT_GT(writes.load(), at_switch) << "the hammer did not run in phase 3";
  FinishAndCompare(id, {"hot.img"});
}

TEST_F(MigrationTest, FinishFencesTheSourceAndReceivingCopyRefusesWriters) {
  StartDaemons();
  WritePatternFile(a_->Src("f.img"), 8 * kMiB, 4);
  std::string id = StartMigration({"f.img"}, 2000);
  ASSERT_TRUE(WaitForPhase(*a_, id, "bulk", 20s));
  // I6 on the target: the copy being received cannot be opened for writing.
  ASSERT_TRUE(WaitFor([&] { return access(b_->Src("f.img").c_str(), F_OK) == 0; }, 10s));
  int tfd = open(b_->Mnt("f.img").c_str(), O_WRONLY);
  EXPECT_EQ(tfd, -1);
  EXPECT_EQ(errno, EBUSY);
  a_->Request({{"op", "set_network_limit"}, {"id", id}, {"kbps", 0}});
  auto early = a_->Request({{"op", "finish"}, {"id", "m999"}});
  EXPECT_EQ(early["error"].value("code", ""), "unknown_id");
  FinishAndCompare(id, {"f.img"});
  // A second finish reports the same result.
  EXPECT_TRUE(a_->Request({{"op", "finish"}, {"id", id}}).value("ok", false));
  // The source is fenced: reads work, writes get EROFS.
  int fd = open(a_->Mnt("f.img").c_str(), O_WRONLY);
  EXPECT_EQ(fd, -1);
  EXPECT_EQ(errno, EROFS);
  fd = open(a_->Mnt("f.img").c_str(), O_RDONLY);
  EXPECT_GE(fd, 0);
  char c;
  EXPECT_EQ(pread(fd, &c, 1, 0), 1);
  close(fd);
  // The target copy is complete and writable through its mount.
  tfd = open(b_->Mnt("f.img").c_str(), O_WRONLY);
  EXPECT_GE(tfd, 0);
  close(tfd);
  auto released = a_->Request({{"op", "release"}, {"id", id}});
  ASSERT_TRUE(released.value("ok", false)) << released.dump();
  fd = open(a_->Mnt("f.img").c_str(), O_WRONLY);
  EXPECT_GE(fd, 0);
  close(fd);
}

// The hypervisor on the target opens the image through the target's mount after
// finish; if that mount cached the inode while the image was received (someone ran
// stat), it must still see the final size and bytes, not what it cached.
TEST_F(MigrationTest, TargetMountSeesTheFinalImageAfterFinish) {
  StartDaemons();
  WritePatternFile(a_->Src("g.img"), 8 * kMiB, 13);
  std::string id = StartMigration({"g.img"});
  ASSERT_TRUE(WaitForCompletion(*a_, id, 30s));
  struct stat st;
  ASSERT_EQ(stat(b_->Mnt("g.img").c_str(), &st), 0);  // the target mount caches the inode
  EXPECT_EQ(st.st_size, off_t(8 * kMiB));
  int tfd = open(b_->Mnt("g.img").c_str(), O_RDONLY);  // and its pages
  ASSERT_GE(tfd, 0);
  std::vector<char> buf(kMiB);
  ASSERT_EQ(pread(tfd, buf.data(), buf.size(), 0), ssize_t(kMiB));
  close(tfd);
  int fd = open(a_->Mnt("g.img").c_str(), O_WRONLY);  // grow and rewrite while mirroring
  ASSERT_GE(fd, 0);
  std::vector<char> w(kMiB, 'n');
  ASSERT_EQ(pwrite(fd, w.data(), w.size(), 0), ssize_t(kMiB));
  ASSERT_EQ(pwrite(fd, w.data(), w.size(), 12 * kMiB), ssize_t(kMiB));
  ASSERT_EQ(fsync(fd), 0);
  close(fd);
  FinishAndCompare(id, {"g.img"});
  EXPECT_TRUE(FilesEqual(a_->Src("g.img"), b_->Mnt("g.img"))) << "the target mount shows a stale copy";
}

// The same while a reader (an operator's qemu-img info, a backup agent) holds the
// copy open through the target's mount across the finish: the kernel keeps that
// inode, and with the writeback cache it trusts only its own idea of the size.
TEST_F(MigrationTest, TargetMountSeesTheGrownImageEvenWhileHeldOpen) {
  StartDaemons();
  WritePatternFile(a_->Src("h.img"), 8 * kMiB + 1000, 14);  // the tail page is partial
  std::string id = StartMigration({"h.img"});
  ASSERT_TRUE(WaitForCompletion(*a_, id, 30s));
  int held = open(b_->Mnt("h.img").c_str(), O_RDONLY);
  ASSERT_GE(held, 0);
  std::vector<char> buf(kMiB);
  ASSERT_EQ(pread(held, buf.data(), buf.size(), 0), ssize_t(kMiB));
  int fd = open(a_->Mnt("h.img").c_str(), O_WRONLY);  // grow while mirroring
  ASSERT_GE(fd, 0);
  std::vector<char> w(kMiB + 333, 'g');
  ASSERT_EQ(pwrite(fd, w.data(), w.size(), 12 * kMiB), ssize_t(w.size()));
  ASSERT_EQ(fsync(fd), 0);
  close(fd);
  FinishAndCompare(id, {"h.img"});
  struct stat st;
  ASSERT_EQ(fstat(held, &st), 0);
  EXPECT_EQ(st.st_size, off_t(13 * kMiB + 333)) << "the held-open inode kept its old size";
  EXPECT_TRUE(FilesEqual(a_->Src("h.img"), b_->Mnt("h.img"))) << "the target mount shows a stale copy";
  close(held);
}

TEST_F(MigrationTest, BadNamesAreRefusedAndNothingIsWritten) {
  StartDaemons();
  WritePatternFile(a_->Src("ok.img"), kMiB, 5);
  for (std::string name : {"../x", "/etc/passwd", "a/../../b", "", "missing.img"}) {
    auto r = a_->Request({{"op", "start"}, {"images", {name}}, {"target", target_addr_}});
    EXPECT_FALSE(r.value("ok", true)) << name;
    std::string code = r["error"].value("code", "");
    EXPECT_TRUE(code == "bad_name" || code == "not_found" || code == "bad_request") << name << ": " << r.dump();
  }
  EXPECT_EQ(a_->Request({{"op", "list"}})["migrations"].size(), 0u);
  EXPECT_EQ(access((*tmp_ / "x").c_str(), F_OK), -1);
}

TEST_F(MigrationTest, WrongKeyPausesWithAuthFailedAndCreatesNothing) {
  WriteKeyFile(*tmp_ / "other.key");
  a_cfg_.keyfile = *tmp_ / "other.key";
  StartDaemons();
  WritePatternFile(a_->Src("k.img"), kMiB, 6);
  std::string id = StartMigration({"k.img"});
  ASSERT_TRUE(WaitForPhase(*a_, id, "paused", 20s));
  auto p = Progress(id);
  EXPECT_NE(p.dump().find("auth_failed"), std::string::npos) << p.dump();
  EXPECT_EQ(access(b_->Src("k.img").c_str(), F_OK), -1) << "the target wrote before authenticating";
  EXPECT_TRUE(a_->Request({{"op", "cancel"}, {"id", id}}).value("ok", false));
}

TEST_F(MigrationTest, NoKeyOnTheSourceIsRefused) {
  a_cfg_.keyfile = "";
  StartDaemons();
  WritePatternFile(a_->Src("k.img"), kMiB, 7);
  std::string id = StartMigration({"k.img"});
  ASSERT_TRUE(WaitForPhase(*a_, id, "paused", 20s));
  EXPECT_NE(Progress(id).dump().find("auth_failed"), std::string::npos) << Progress(id).dump();
  EXPECT_EQ(access(b_->Src("k.img").c_str(), F_OK), -1);
}

class TargetKilled : public MigrationTest, public ::testing::WithParamInterface<std::string> {};

// kill -9 of the target in each phase: the VM's writes keep succeeding, the migration
// pauses with a reason, resumes from its bitmap when the target is back, ends identical.
TEST_P(TargetKilled, VmWritesGoOnAndTheMigrationResumes) {
  if (!HaveTool("fio")) GTEST_SKIP() << "fio missing";
  StartDaemons();
  WritePatternFile(a_->Src("vm.img"), 64 * kMiB, 8);
  std::string log = *tmp_ / "fio.log";
  pid_t fio = StartFio(a_->Mnt("vm.img"), 64, 15, "10m", log);
  std::string id = StartMigration({"vm.img"}, GetParam() == "mirror" ? 0 : 10000);
  ASSERT_TRUE(WaitForPhase(*a_, id, GetParam(), 60s));
  b_->Kill9();
  ASSERT_TRUE(WaitForPhase(*a_, id, "paused", 60s));
  EXPECT_FALSE(Progress(id).value("pause_reason", "").empty()) << Progress(id).dump();
  std::this_thread::sleep_for(2s);
  ASSERT_TRUE(b_->Start());
  a_->Request({{"op", "set_network_limit"}, {"id", id}, {"kbps", 0}});
  EXPECT_EQ(WaitPid(fio, 90s), 0) << "a VM write failed during the outage; see " << log;
  auto p = Progress(id);
  FinishAndCompare(id, {"vm.img"});
  // Resumed, not restarted: far less than two full copies went over the wire.
  EXPECT_LT(Progress(id).value("bytes_sent", uint64_t(0)), 64 * kMiB * 3) << p.dump();
}

INSTANTIATE_TEST_SUITE_P(EachPhase, TargetKilled, ::testing::Values("bulk", "dirty", "mirror"));

// The source daemon itself restarts mid-migration: a new start compares per-block
// hashes with the target's partial copy and ships only the blocks that differ.
TEST_F(MigrationTest, SourceRestartResumesByHashCompare) {
  StartDaemons();
  WritePatternFile(a_->Src("r.img"), 64 * kMiB, 9);
  std::string id = StartMigration({"r.img"}, 20000);
  ASSERT_TRUE(WaitFor([&] { return Progress(id).value("bytes_sent", uint64_t(0)) >= 40 * kMiB; }, 30s))
      << Progress(id).dump();
  a_->Kill9();
  // Change one block while no daemon runs on the source.
  int fd = open(a_->Src("r.img").c_str(), O_WRONLY);
  std::vector<char> buf(4096, 'z');
  ASSERT_EQ(pwrite(fd, buf.data(), buf.size(), 5 * kMiB), 4096);
  close(fd);
  ASSERT_TRUE(a_->Start());
  std::string id2 = StartMigration({"r.img"});
  ASSERT_TRUE(WaitForCompletion(*a_, id2, 60s));
  uint64_t sent = Progress(id2).value("bytes_sent", uint64_t(0));
  EXPECT_LT(sent, 40 * kMiB) << "restarted from scratch instead of resuming";
  FinishAndCompare(id2, {"r.img"});
}

// A restarted target guards a partial copy from its first moment, not only once the
// source reconnects (I6): it comes back on another port, so the source cannot reach
// it and only the start-up scan can refuse the writer. Then it returns on its own
// address, the migration resumes and ends identical.
TEST_F(MigrationTest, RestartedTargetGuardsPartialCopyBeforeTheSourceReconnects) {
  StartDaemons();
  WritePatternFile(a_->Src("p.img"), 16 * kMiB, 5);
  WritePatternFile(b_->Src("local.img"), kMiB, 6);  // a complete local file stays writable
  std::string id = StartMigration({"p.img"}, 2000);
  ASSERT_TRUE(WaitFor([&] { return Progress(id).value("bytes_sent", uint64_t(0)) > 0; }, 20s)) << Progress(id).dump();
  b_->Kill9();
  DaemonConfig elsewhere = b_cfg_;
  elsewhere.listen = "127.0.0.1:" + std::to_string(FreeTcpPort());
  b_ = std::make_unique<Daemon>(*tmp_ / "b", elsewhere);
  ASSERT_TRUE(b_->Start());
  int fd = open(b_->Mnt("p.img").c_str(), O_WRONLY);
  EXPECT_EQ(fd, -1) << "the partial copy was writable after the target restarted";
  EXPECT_EQ(errno, EBUSY);
  if (fd >= 0) close(fd);
  fd = open(b_->Mnt("p.img").c_str(), O_RDONLY);  // an operator may still look at it
  EXPECT_GE(fd, 0);
  if (fd >= 0) close(fd);
  fd = open(b_->Mnt("local.img").c_str(), O_WRONLY);
  EXPECT_GE(fd, 0);
  if (fd >= 0) close(fd);
  b_ = std::make_unique<Daemon>(*tmp_ / "b", b_cfg_);  // back where the source looks
  ASSERT_TRUE(b_->Start());
  a_->Request({{"op", "set_network_limit"}, {"id", id}, {"kbps", 0}});
  FinishAndCompare(id, {"p.img"});
  fd = open(b_->Mnt("p.img").c_str(), O_WRONLY);  // finished: the guard is gone
  EXPECT_GE(fd, 0);
  if (fd >= 0) close(fd);
}

// finish's fence outlives the source daemon (I6): killed and restarted, the daemon
// still refuses writers of the copy, lists the fence as r1, refuses to migrate that
// image again, and release lifts the fence for good. Nobody can strip the mark
// through the mount.
TEST_F(MigrationTest, FenceSurvivesASourceRestartUntilReleased) {
  StartDaemons();
  WritePatternFile(a_->Src("f.img"), 4 * kMiB, 21);
  std::string id = StartMigration({"f.img"});
  FinishAndCompare(id, {"f.img"});
  EXPECT_EQ(removexattr(a_->Mnt("f.img").c_str(), "user.migratefs.fenced"), -1);
  EXPECT_EQ(errno, EPERM);
  a_->Kill9();
  ASSERT_TRUE(a_->Start());
  int fd = open(a_->Mnt("f.img").c_str(), O_WRONLY);
  EXPECT_EQ(fd, -1) << "the fenced copy became writable when its daemon restarted";
  EXPECT_EQ(errno, EROFS);
  if (fd >= 0) close(fd);
  fd = open(a_->Mnt("f.img").c_str(), O_RDONLY);
  EXPECT_GE(fd, 0);
  if (fd >= 0) close(fd);
  auto list = a_->Request({{"op", "list"}});
  ASSERT_EQ(list["migrations"].size(), 1u) << list.dump();
  EXPECT_EQ(list["migrations"][0].value("id", ""), "r1");
  EXPECT_EQ(list["migrations"][0]["images"], nlohmann::json::array({"f.img"})) << list.dump();
  EXPECT_EQ(list["migrations"][0].value("target", ""), target_addr_) << list.dump();
  auto again = a_->Request({{"op", "start"}, {"images", {"f.img"}}, {"target", target_addr_}});
  EXPECT_EQ(again["error"].value("code", ""), "busy") << again.dump();
  auto progress = a_->Request({{"op", "query_progress"}, {"id", "r1"}, {"what", "network"}});
  EXPECT_EQ(progress["error"].value("code", ""), "wrong_state") << progress.dump();
  auto released = a_->Request({{"op", "release"}, {"id", "r1"}});
  ASSERT_TRUE(released.value("ok", false)) << released.dump();
  fd = open(a_->Mnt("f.img").c_str(), O_WRONLY);
  EXPECT_GE(fd, 0);
  if (fd >= 0) close(fd);
  RestartSource();  // released means released: nothing comes back
  fd = open(a_->Mnt("f.img").c_str(), O_WRONLY);
  EXPECT_GE(fd, 0);
  if (fd >= 0) close(fd);
  EXPECT_TRUE(a_->Request({{"op", "list"}})["migrations"].empty());
  EXPECT_TRUE(FilesEqual(a_->Src("f.img"), b_->Src("f.img")));
}

// The target's disk fills up: the migration pauses with the root cause (target_full,
// never the "busy" of its own stale session: issue 17.3), backs off instead of
// resending into the full disk, the VM's writes keep succeeding, and once space is
// freed it resumes and ends identical. `force` skips the up-front room check, so the
// copy really runs into ENOSPC; without it the start pauses before sending anything.
TEST_F(MigrationTest, FullTargetDiskPausesThenResumes) {
  a_ = std::make_unique<Daemon>(*tmp_ / "a", a_cfg_);
  b_ = std::make_unique<Daemon>(*tmp_ / "b", b_cfg_);
  ASSERT_EQ(Shell("mount -t tmpfs -o size=16m mfs-full '" + b_->src() + "'"), 0);
  ASSERT_TRUE(b_->Start());
  ASSERT_TRUE(a_->Start());
  WritePatternFile(a_->Src("big.img"), 32 * kMiB, 12);
  WritePatternFile(a_->Src("precheck.img"), 24 * kMiB, 13);
  auto pre = a_->Request({{"op", "start"}, {"images", {"precheck.img"}}, {"target", target_addr_}});
  ASSERT_TRUE(pre.value("ok", false)) << pre.dump();
  const std::string pre_id = pre.value("id", "");
  ASSERT_TRUE(WaitFor([&] { return Progress(pre_id).value("pause_reason", "").find("needs about") != std::string::npos; },
                      20s))
      << Progress(pre_id).dump();
  EXPECT_NE(Progress(pre_id).value("pause_reason", "").find("target_full"), std::string::npos);
  EXPECT_EQ(Progress(pre_id).value("bytes_sent", uint64_t(1)), 0u) << "sent data into a target without room";
  ASSERT_TRUE(a_->Request({{"op", "cancel"}, {"id", pre_id}}).value("ok", false));

  auto r = a_->Request({{"op", "start"}, {"images", {"big.img"}}, {"target", target_addr_}, {"force", true}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  const std::string id = r.value("id", "");
  std::vector<std::string> reasons;
  EXPECT_TRUE(WaitFor(
      [&] {
        reasons.push_back(Progress(id).value("pause_reason", ""));
        return reasons.back().find("No space left") != std::string::npos;
      },
      30s));
  // Full for a while: every reason given is the root cause, and the source backs off.
  const uint64_t sent_at_full = Progress(id).value("bytes_sent", uint64_t(0));
  for (int i = 0; i < 60; i++) {
    reasons.push_back(Progress(id).value("pause_reason", ""));
    std::this_thread::sleep_for(100ms);
  }
  size_t full = 0;
  for (const std::string& why : reasons) {
    EXPECT_EQ(why.find("busy"), std::string::npos) << why;
    if (why.find("target_full") != std::string::npos) full++;
  }
  EXPECT_GT(full, reasons.size() / 2) << "the root cause was shown in only " << full << " of " << reasons.size();
  EXPECT_LT(Progress(id).value("bytes_sent", uint64_t(0)) - sent_at_full, 32 * kMiB)
      << "kept resending into the full target";
  int fd = open(a_->Mnt("big.img").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  std::vector<char> buf(kMiB, 'w');
  for (int i = 0; i < 8; i++) EXPECT_EQ(pwrite(fd, buf.data(), buf.size(), off_t(i * 3 * kMiB)), ssize_t(kMiB));
  EXPECT_EQ(fsync(fd), 0);
  close(fd);
  ASSERT_EQ(Shell("mount -o remount,size=128m '" + b_->src() + "'"), 0);
  FinishAndCompare(id, {"big.img"});
}

TEST_F(MigrationTest, SeveralImagesOfOneVmFinishTogether) {
  StartDaemons();
  WritePatternFile(a_->Src("root.img"), 16 * kMiB, 10);
  WritePatternFile(a_->Src("data.img"), 24 * kMiB, 11);
  std::string id = StartMigration({"root.img", "data.img"});
  auto p = Progress(id);
  FinishAndCompare(id, {"root.img", "data.img"});
}

}  // namespace
}  // namespace migratefs::testing
