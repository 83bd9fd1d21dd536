// The migratefs binary: command line, daemonizing, unmounting, refusing bad input.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <string>
#include <thread>

#include "tests/fs_test_util.h"

namespace migratefs::fs::testing {
namespace {

using namespace std::chrono_literals;

int MountCount(const std::string& dir) {
  std::ifstream in("/proc/self/mounts");
  std::string dev, mnt, rest;
  int n = 0;
  while (in >> dev >> mnt && std::getline(in, rest)) n += mnt == dir;
  return n;
}

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds limit = 5000ms) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return cond();
}

// Pids of migratefs processes whose command line mentions `dir`.
std::vector<pid_t> DaemonsFor(const std::string& dir) {
  std::vector<pid_t> pids;
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    pid_t pid = atoi(e->d_name);
    if (pid <= 0) continue;
    std::string cmd = ReadFile("/proc/" + std::string(e->d_name) + "/cmdline");
    std::string state = ReadFile("/proc/" + std::string(e->d_name) + "/stat");
    if (cmd.find("migratefs") != std::string::npos && cmd.find(dir) != std::string::npos &&
        state.find(") Z") == std::string::npos) {
      pids.push_back(pid);
    }
  }
  closedir(d);
  return pids;
}

class FsCli : public ::testing::Test {
 protected:
  FsCli() : src_(dir_ / "src"), mnt_(dir_ / "mnt") {
    mkdir(src_.c_str(), 0755);
    mkdir(mnt_.c_str(), 0755);
  }
  ~FsCli() override {
    ForceUnmount(mnt_);
    ForceUnmount(src_);
    for (pid_t p : DaemonsFor(dir_.path())) kill(p, SIGKILL);
  }
  Cmd Mount(const std::string& args) { return Shell(Q(Binary()) + " " + args, 20); }
  // Starts `migratefs -f ...` as a child; returns its pid.
  pid_t StartForeground(const std::string& src, const std::string& mnt, const std::string& opts = "") {
    pid_t pid = fork();
    if (pid == 0) {
      int null = open("/dev/null", O_WRONLY);
      dup2(null, 1);
      dup2(null, 2);
      if (opts.empty()) {
        execl(Binary().c_str(), "migratefs", "-f", src.c_str(), mnt.c_str(), static_cast<char*>(nullptr));
      } else {
        execl(Binary().c_str(), "migratefs", "-f", src.c_str(), mnt.c_str(), "-o", opts.c_str(),
              static_cast<char*>(nullptr));
      }
      _exit(127);
    }
    return pid;
  }
  int WaitExit(pid_t pid) {
    int status = -1;
    for (int i = 0; i < 500; i++) {
      if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      std::this_thread::sleep_for(10ms);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
  }

  TempDir dir_;
  std::string src_, mnt_;
};

TEST_F(FsCli, HelpAndVersion) {
  Cmd help = Mount("--help");
  EXPECT_EQ(help.status, 0);
  for (const char* word : {"control=", "listen=", "keyfile=", "insecure", "block_size=", "allow_other", "nowriteback",
                           "max_threads=", "max_background=", "fstab", "fusermount3 -u"}) {
    EXPECT_NE(help.out.find(word), std::string::npos) << word;
  }
  Cmd version = Mount("--version");
  EXPECT_EQ(version.status, 0);
  EXPECT_NE(version.out.find("migratefs "), std::string::npos);
}

TEST_F(FsCli, RefusesBadInputAndMountsNothing) {
  struct Case {
    std::string args, message;
  } cases[] = {
      {Q(dir_ / "nope") + " " + Q(mnt_), "SRC"},
      {Q(src_) + " " + Q(dir_ / "nope"), "MNT"},
      {Q(src_) + " " + Q(mnt_) + " -o rw,bogus_option", "unknown mount option 'bogus_option'"},
      {Q(src_) + " " + Q(mnt_) + " -o block_size=1000", "block_size"},
      {Q(src_) + " " + Q(mnt_) + " -o listen=127.0.0.1:7000", "keyfile"},
      {Q(src_) + " " + Q(mnt_) + " --frobnicate", "--frobnicate"},
      {Q(src_), "missing SRC or MNT"},
  };
  WriteFile(dir_ / "file", "x");
  for (const Case& c : cases) {
    Cmd r = Mount(c.args);
    EXPECT_NE(r.status, 0) << c.args;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << c.args << " -> " << r.out;
    EXPECT_EQ(MountCount(mnt_), 0) << c.args;
  }
  Cmd r = Mount(Q(src_) + " " + Q(dir_ / "file"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("not a directory"), std::string::npos) << r.out;
}

TEST_F(FsCli, DaemonizesServesAndUnmountsCleanly) {
  WriteFile(src_ + "/disk.img", "image bytes");
  Cmd r = Mount(Q(src_) + " " + Q(mnt_) + " -o allow_other");
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_TRUE(IsMounted(mnt_));
  auto pids = DaemonsFor(dir_.path());
  // The supervisor and its worker (fs/supervisor.h), nothing else.
  ASSERT_EQ(pids.size(), 2u) << "expected a supervisor and its worker in the background";
  EXPECT_EQ(ReadFile(mnt_ + "/disk.img"), "image bytes");
  WriteFile(mnt_ + "/new", "through the mount");
  EXPECT_EQ(ReadFile(src_ + "/new"), "through the mount");

  // A second mount on the same MNT is refused and does not stack.
  Cmd busy = Mount(Q(src_) + " " + Q(mnt_));
  EXPECT_NE(busy.status, 0);
  EXPECT_NE(busy.out.find("busy"), std::string::npos) << busy.out;
  EXPECT_EQ(MountCount(mnt_), 1);

  Cmd u = Shell("fusermount3 -u " + Q(mnt_));
  EXPECT_EQ(u.status, 0) << u.out;
  EXPECT_FALSE(IsMounted(mnt_));
  EXPECT_TRUE(WaitFor([&] { return DaemonsFor(dir_.path()).empty(); })) << "daemon still running after unmount";
}

// The mount's bdi gets the read-ahead and dirty-cache sizes asked for (the kernel's
// FUSE default caps dirty pages at 1 % of dirtyable memory), and 0 leaves them alone.
TEST_F(FsCli, TunesTheMountsBdi) {
  auto bdi = [&](const std::string& knob) {
    struct stat st {};
    if (stat(mnt_.c_str(), &st) != 0) return std::string();
    std::string path = "/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev)) + "/" + knob;
    std::string v = ReadFile(path);
    while (!v.empty() && v.back() == '\n') v.pop_back();
    return v;
  };
  ASSERT_EQ(Mount(Q(src_) + " " + Q(mnt_) + " -o dirty_max_mb=300,read_ahead_kb=2048").status, 0);
  // The kernel keeps it as a ratio of dirtyable memory: the bytes read back are near.
  auto near = [&](uint64_t want) {
    const std::string v = bdi("max_bytes");
    return !v.empty() && std::abs(double(std::stoull(v)) - double(want)) < 0.05 * double(want);
  };
  EXPECT_TRUE(WaitFor([&] { return near(300ull << 20); })) << bdi("max_bytes");
  EXPECT_EQ(bdi("read_ahead_kb"), "2048");
  ASSERT_EQ(Shell("fusermount3 -u " + Q(mnt_)).status, 0);
  ASSERT_TRUE(WaitFor([&] { return DaemonsFor(dir_.path()).empty(); }));
  ASSERT_EQ(Mount(Q(src_) + " " + Q(mnt_) + " -o dirty_max_mb=0").status, 0);
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(near(1024ull << 20)) << "dirty_max_mb=0 must keep the kernel's cap";
  EXPECT_EQ(bdi("max_ratio"), "1");
  ASSERT_EQ(Shell("fusermount3 -u " + Q(mnt_)).status, 0);
}

// The migration services start after the fork; if they fail, the waiting parent
// reports it (status and message) and the mount is gone again.
TEST_F(FsCli, ServicesFailureIsReportedEvenWhenDaemonized) {
  std::string bad = "control=" + dir_ / "no/such/dir/control.sock";
  Cmd fg = Mount("-f " + Q(src_) + " " + Q(mnt_) + " -o " + Q(bad));
  if (fg.status == 0) GTEST_SKIP() << "these services accept an unusable control path";
  EXPECT_FALSE(IsMounted(mnt_));
  Cmd bg = Mount(Q(src_) + " " + Q(mnt_) + " -o " + Q(bad));
  EXPECT_NE(bg.status, 0) << bg.out;
  EXPECT_NE(bg.out.find("cannot start services"), std::string::npos) << bg.out;
  EXPECT_FALSE(IsMounted(mnt_));
  EXPECT_TRUE(WaitFor([&] { return DaemonsFor(dir_.path()).empty(); }));
}

TEST_F(FsCli, ForegroundExitsZeroOnUnmountAndOnSigterm) {
  pid_t pid = StartForeground(src_, mnt_);
  ASSERT_TRUE(WaitFor([&] { return IsMounted(mnt_); }));
  EXPECT_EQ(Shell("fusermount3 -u " + Q(mnt_)).status, 0);
  EXPECT_EQ(WaitExit(pid), 0);

  pid = StartForeground(src_, mnt_);
  ASSERT_TRUE(WaitFor([&] { return IsMounted(mnt_); }));
  kill(pid, SIGTERM);
  EXPECT_EQ(WaitExit(pid), 0);
  EXPECT_FALSE(IsMounted(mnt_));
}

// MNT == SRC: the daemon opened SRC before mounting over it, so the images below
// stay reachable and writes through the mount land in them.
TEST_F(FsCli, MountsOverItsOwnSource) {
  WriteFile(src_ + "/vm1.img", "under the mount");
  struct stat below;
  stat((src_ + "/vm1.img").c_str(), &below);
  pid_t pid = StartForeground(src_, src_, "allow_other");
  ASSERT_TRUE(WaitFor([&] { return IsMounted(src_); }));
  struct stat through;
  ASSERT_EQ(stat((src_ + "/vm1.img").c_str(), &through), 0);
  EXPECT_EQ(through.st_ino, below.st_ino);
  EXPECT_NE(through.st_dev, below.st_dev) << "not served by the mount";
  EXPECT_EQ(ReadFile(src_ + "/vm1.img"), "under the mount");
  WriteFile(src_ + "/vm2.img", "written through");
  EXPECT_EQ(Shell("fusermount3 -u " + Q(src_)).status, 0);
  EXPECT_EQ(WaitExit(pid), 0);
  EXPECT_EQ(ReadFile(src_ + "/vm2.img"), "written through");
}

// /etc/fstab: mount(8) runs mount.fuse3, which runs `migratefs SRC MNT -o opts` with
// the generic options fstab lines carry.
TEST_F(FsCli, FstabStyleMountThroughMountFuse3) {
  std::string bin_dir = Binary().substr(0, Binary().rfind('/'));
  Cmd r = Shell("PATH=" + Q(bin_dir) + ":$PATH mount.fuse3 " + Q("migratefs#" + src_) + " " + Q(mnt_) +
              " -o rw,nofail,noauto,_netdev,defaults,dev,suid,exec,relatime,x-systemd.requires=foo,allow_other,"
              "block_size=1M");
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_TRUE(IsMounted(mnt_));
  std::string mounts = ReadFile("/proc/self/mounts");
  EXPECT_NE(mounts.find(mnt_ + " fuse.migratefs"), std::string::npos);
  WriteFile(mnt_ + "/f", "fstab");
  EXPECT_EQ(ReadFile(src_ + "/f"), "fstab");
  EXPECT_EQ(Shell("fusermount3 -u " + Q(mnt_)).status, 0);
  EXPECT_TRUE(WaitFor([&] { return DaemonsFor(dir_.path()).empty(); }));
}

}  // namespace
}  // namespace migratefs::fs::testing
