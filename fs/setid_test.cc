// The capability probe behind setid.h (the clearing itself is tested through a mount
// in tests/fs_perm_test.cc).
#include "fs/setid.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace migratefs::fs {
namespace {

// Runs `command` (which ends by exec'ing sleep) and waits until sleep runs, so the
// probe sees its credentials and not those of the shell before it.
pid_t Spawn(const char* command) {
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", command, static_cast<char*>(nullptr));
    _exit(127);
  }
  const std::string exe = "/proc/" + std::to_string(pid) + "/exe";
  for (int i = 0; i < 500; i++) {
    char buf[256];
    ssize_t n = readlink(exe.c_str(), buf, sizeof(buf) - 1);
    if (n > 0 && std::string(buf, size_t(n)).find("sleep") != std::string::npos) break;
    usleep(10 * 1000);
  }
  return pid;
}

void Reap(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

TEST(SetId, RootHasFsetidAndAProcessThatDroppedItHasNot) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  EXPECT_TRUE(HasFsetid(getpid()));
  pid_t dropped = Spawn("exec setpriv --inh-caps=-all --bounding-set=-fsetid sleep 30");
  EXPECT_FALSE(HasFsetid(dropped));
  Reap(dropped);
  pid_t nobody = Spawn("exec setpriv --reuid=65534 --regid=65534 --clear-groups sleep 30");
  EXPECT_FALSE(HasFsetid(nobody));
  Reap(nobody);
}

TEST(SetId, ACallerInAUserNamespaceOfItsOwnDoesNotCount) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  // Root inside a new user namespace has every capability there, none on our files.
  pid_t inner = Spawn("exec unshare --user --map-root-user sleep 30");
  EXPECT_FALSE(HasFsetid(inner));
  Reap(inner);
}

TEST(SetId, AProcessThatCannotBeInspectedIsUnprivileged) {
  EXPECT_FALSE(HasFsetid(0));
  EXPECT_FALSE(HasFsetid(-1));
  pid_t gone = fork();
  if (gone == 0) _exit(0);
  waitpid(gone, nullptr, 0);
  EXPECT_FALSE(HasFsetid(gone));
}

}  // namespace
}  // namespace migratefs::fs
