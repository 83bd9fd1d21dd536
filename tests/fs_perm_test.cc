// Ownership of new nodes and permission checks, for unprivileged callers (setpriv as
// nobody) with allow_other; every case is repeated on the plain directory.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#include "tests/fs_test_util.h"

namespace migratefs::fs::testing {
namespace {

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

std::string Owner(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) < 0) return "missing";
  char buf[64];
  snprintf(buf, sizeof(buf), "%u:%u %o", st.st_uid, st.st_gid, st.st_mode);
  return buf;
}

// Runs `script` as nobody with R set to the tree root.
Cmd AsNobody(const std::string& root, const std::string& script, const std::string& groups = "--clear-groups") {
  return Shell("R=" + Q(root) + " setpriv --reuid=65534 --regid=65534 " + groups + " sh -c " + Q(script));
}

class FsPerm : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const std::string& r : {m_.src(), m_.ref()}) {
      mkdir((r + "/pub").c_str(), 0);
      chmod((r + "/pub").c_str(), 01777);
      mkdir((r + "/sgid").c_str(), 0);
      chown((r + "/sgid").c_str(), 0, 1234);
      chmod((r + "/sgid").c_str(), 02777);
      mkdir((r + "/team").c_str(), 0);
      chown((r + "/team").c_str(), 0, 4321);
      chmod((r + "/team").c_str(), 0770);
      WriteFile(r + "/secret", "s");
      chmod((r + "/secret").c_str(), 0600);
      WriteFile(r + "/readonly", "r");
      chmod((r + "/readonly").c_str(), 0644);
    }
  }
  // Runs the script on the plain tree and through the mount; both must agree.
  Cmd Both(const std::string& script, const std::string& groups = "--clear-groups") {
    Cmd native = AsNobody(m_.ref(), script, groups);
    Cmd mounted = AsNobody(m_.mnt(), script, groups);
    EXPECT_EQ(native.status, mounted.status) << script << "\nnative: " << native.out << "\nmounted: " << mounted.out;
    return mounted;
  }
  InProcessMount m_;  // allow_other
};

TEST_F(FsPerm, NewNodesBelongToTheCaller) {
  Cmd c = Both("umask 027; echo x > $R/pub/f && mkdir $R/pub/d && ln -s f $R/pub/s && mkfifo $R/pub/p && "
               "ln $R/pub/f $R/pub/hard");
  ASSERT_EQ(c.status, 0) << c.out;
  for (const char* name : {"/pub/f", "/pub/d", "/pub/s", "/pub/p", "/pub/hard"}) {
    EXPECT_EQ(Owner(m_.src() + name), Owner(m_.ref() + name)) << name;
    struct stat st;
    ASSERT_EQ(lstat((m_.src() + name).c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, kNobody) << name;
    EXPECT_EQ(st.st_gid, kNogroup) << name;
  }
  EXPECT_EQ(Owner(m_.src() + "/pub/f").substr(12), "100640");  // the caller's umask applied once
}

TEST_F(FsPerm, SetGidDirectoriesAndSupplementaryGroups) {
  ASSERT_EQ(Both("touch $R/sgid/f && mkdir $R/sgid/d").status, 0);
  EXPECT_EQ(Owner(m_.src() + "/sgid/f"), Owner(m_.ref() + "/sgid/f"));
  EXPECT_EQ(Owner(m_.src() + "/sgid/d"), Owner(m_.ref() + "/sgid/d"));
  struct stat st;
  ASSERT_EQ(stat((m_.src() + "/sgid/d").c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, 1234u);
  EXPECT_TRUE(st.st_mode & S_ISGID);
  // A directory writable through a supplementary group only.
  EXPECT_NE(Both("touch $R/team/f").status, 0);
  ASSERT_EQ(Both("touch $R/team/f", "--groups=4321").status, 0);
  EXPECT_EQ(Owner(m_.src() + "/team/f"), Owner(m_.ref() + "/team/f"));
}

TEST_F(FsPerm, PermissionDeniedIsEnforced) {
  for (const char* script : {"cat $R/secret", "echo x >> $R/readonly", "touch $R/newfile", "mkdir $R/newdir",
                             "rm -f $R/readonly", "chmod 777 $R/readonly", "chown 65534 $R/readonly",
                             "truncate -s 0 $R/readonly", "ls $R/team", "mv $R/readonly $R/pub/x"}) {
    Cmd c = Both(script);
    EXPECT_NE(c.status, 0) << script << " succeeded through the mount";
  }
  // Sticky /pub: nobody cannot remove root's file there.
  WriteFile(m_.src() + "/pub/roots", "r");
  WriteFile(m_.ref() + "/pub/roots", "r");
  EXPECT_NE(Both("rm -f $R/pub/roots").status, 0);
  EXPECT_EQ(Both("cat $R/readonly").status, 0);
  EXPECT_EQ(ReadFile(m_.src() + "/readonly"), "r");
}

// A set-user-ID file (and a set-group-ID one whose group may execute it) that an
// unprivileged caller modifies loses those bits, as on the plain file system: the
// classic guard against writing code into a setuid-root program. Every way of
// modifying is tried (buffered and direct write, truncate, open with O_TRUNC,
// fallocate); a set-group-ID file without group execute keeps its bit (the old
// mandatory-locking mark), and root (CAP_FSETID) keeps every bit. The modes are
// compared in SRC and as the kernel reports them through the mount.
TEST_F(FsPerm, SetIdBitsFallWhenAnUnprivilegedCallerModifies) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"append", "echo x >> $R/pub/append"},
      {"direct", "dd if=/dev/zero of=$R/pub/direct bs=4096 count=1 oflag=direct conv=notrunc status=none"},
      {"truncate", "truncate -s 1 $R/pub/truncate"},
      {"otrunc", ": > $R/pub/otrunc"},
      {"falloc", "fallocate -l 65536 $R/pub/falloc"},
  };
  for (const std::string& r : {m_.src(), m_.ref()}) {
    for (const auto& [name, script] : cases) {
      for (const char* kind : {"-u", "-gx", "-g"}) {
        const std::string path = r + "/pub/" + name + kind;
        WriteFile(path, std::string(8192, 'a'));
        chmod(path.c_str(), std::string(kind) == "-u" ? 04777 : std::string(kind) == "-gx" ? 02777 : 02666);
      }
    }
    WriteFile(r + "/pub/root-u", "a");
    chmod((r + "/pub/root-u").c_str(), 06777);
  }
  for (const auto& [name, script] : cases) {
    for (const char* kind : {"-u", "-gx", "-g"}) {
      std::string s = script;
      s.replace(s.find("$R/pub/" + name) + 7 + name.size(), 0, kind);
      ASSERT_EQ(Both(s).status, 0) << s;
      const std::string rel = "/pub/" + name + kind;
      EXPECT_EQ(Owner(m_.src() + rel), Owner(m_.ref() + rel)) << s << " (mode in SRC)";
      EXPECT_EQ(Owner(m_.mnt() + rel), Owner(m_.ref() + rel)) << s << " (mode the mount reports)";
    }
  }
  // A file written through the mount before it became set-user-ID: the kernel had
  // marked its inode as having nothing to clear (S_NOSEC), and chmod must undo that.
  ASSERT_EQ(Shell("for R in " + Q(m_.mnt()) + " " + Q(m_.ref()) + "; do echo x > $R/pub/later && chmod 4777 $R/pub/later; done").status, 0);
  ASSERT_EQ(Both("echo y >> $R/pub/later").status, 0);
  EXPECT_EQ(Owner(m_.src() + "/pub/later"), Owner(m_.ref() + "/pub/later"));
  EXPECT_EQ(Owner(m_.mnt() + "/pub/later"), Owner(m_.ref() + "/pub/later"));
  // Root writes through the mount and keeps both bits.
  ASSERT_EQ(Shell("echo x >> " + Q(m_.mnt() + "/pub/root-u") + " && echo x >> " + Q(m_.ref() + "/pub/root-u")).status, 0);
  EXPECT_EQ(Owner(m_.mnt() + "/pub/root-u"), Owner(m_.ref() + "/pub/root-u"));
  EXPECT_EQ(Owner(m_.src() + "/pub/root-u").substr(4), "106777");
}

TEST(FsPermNoAllowOther, OtherUsersAreLockedOut) {
  InProcessMount m("nowriteback");
  WriteFile(m.src() + "/f", "x");
  chmod((m.src() + "/f").c_str(), 0644);
  Cmd c = AsNobody(m.mnt(), "cat $R/f");
  EXPECT_NE(c.status, 0) << c.out;
  EXPECT_EQ(ReadFile(m.mnt() + "/f"), "x");  // root still can
}

}  // namespace
}  // namespace migratefs::fs::testing
