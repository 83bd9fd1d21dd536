// The restart state on its own: what one InodeTable/HandleTable records, a second
// one built from the same memfd must serve under the same ids.
#include "fs/restart_state.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "fs/handle_table.h"
#include "fs/inode.h"

namespace migratefs::fs {
namespace {

class RestartStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mfs-restart-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    for (const char* n : {"a", "b", "c"}) {
      int fd = open((dir_ + "/" + n).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(write(fd, n, 1), 1);
      close(fd);
    }
    auto st = RestartState::Create();
    ASSERT_TRUE(st.ok()) << st.error().message;
    state_ = std::move(st.value());
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  int RootFd() { return open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC); }

  std::string dir_;
  std::unique_ptr<RestartState> state_;
};

TEST_F(RestartStateTest, ASecondTableServesTheSameNodeIds) {
  // The first table is never destroyed, as a killed worker's is not: its fds stay
  // open under the numbers its records name.
  auto* dead = new InodeTable(RootFd(), state_.get(), nullptr);
  fuse_entry_param e;
  ASSERT_EQ(dead->Lookup(dead->Root(), "a", &e), 0);
  const fuse_ino_t ida = e.ino;
  ASSERT_EQ(dead->Lookup(dead->Root(), "b", &e), 0);
  const fuse_ino_t idb = e.ino;
  ASSERT_EQ(dead->Lookup(dead->Root(), "b", &e), 0);  // counted twice
  ASSERT_EQ(dead->Lookup(dead->Root(), "c", &e), 0);
  const fuse_ino_t idc = e.ino;
  dead->Forget(idc, 1);  // gone: its record must not come back
  EXPECT_NE(ida, idb);

  auto adopted = RestartState::Adopt(state_->fd());
  ASSERT_TRUE(adopted.ok()) << adopted.error().message;
  InodeTable restored(adopted.value().get(), nullptr);
  struct stat sa, sb;
  ASSERT_EQ(stat((dir_ + "/a").c_str(), &sa), 0);
  ASSERT_EQ(stat((dir_ + "/b").c_str(), &sb), 0);
  ASSERT_NE(restored.Find(ida), nullptr);
  ASSERT_NE(restored.Find(idb), nullptr);
  EXPECT_EQ(restored.Find(idc), nullptr);
  EXPECT_EQ(restored.Get(ida).ino, sa.st_ino);
  EXPECT_EQ(restored.Get(idb).ino, sb.st_ino);
  EXPECT_EQ(restored.Get(ida).name, "a");
  EXPECT_EQ(restored.Get(ida).parent, FUSE_ROOT_ID);
  // Counts came back: b needs two forgets.
  restored.Forget(idb, 1);
  EXPECT_NE(restored.Find(idb), nullptr);
  restored.Forget(idb, 1);
  EXPECT_EQ(restored.Find(idb), nullptr);
  // A lookup after the restart gets a free slot, never a live one.
  ASSERT_EQ(restored.Lookup(restored.Root(), "c", &e), 0);
  EXPECT_NE(e.ino, ida);
  EXPECT_EQ(restored.Get(e.ino).name, "c");
}

TEST_F(RestartStateTest, HandlesComeBackWithTheirFhAndFlags) {
  InodeTable t(RootFd(), state_.get(), nullptr);
  fuse_entry_param e;
  ASSERT_EQ(t.Lookup(t.Root(), "a", &e), 0);
  HandleTable h(state_.get());
  int fd = open((dir_ + "/a").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto* f = new File(t.Get(e.ino), fd, O_RDWR | O_CLOEXEC);
  const int64_t fh = h.Add(f);
  ASSERT_GE(fh, 0);
  int dfd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const int64_t dh = h.Add(new Dir(fdopendir(dfd)));
  ASSERT_GE(dh, 0);
  EXPECT_NE(fh, dh);

  // A second handle table over the same records (the fds are still open: the first
  // table is not destroyed, as a killed worker's would not be).
  auto adopted = RestartState::Adopt(state_->fd());
  ASSERT_TRUE(adopted.ok());
  HandleRecord& r = adopted.value()->handles().at(static_cast<uint32_t>(fh));
  EXPECT_EQ(r.fd, fd);
  EXPECT_EQ(r.node, e.ino);
  EXPECT_EQ(static_cast<HandleKind>(adopted.value()->handles().at(static_cast<uint32_t>(dh)).kind.load()),
            HandleKind::kDir);
  std::vector<int> named = adopted.value()->NamedFds();
  EXPECT_NE(std::find(named.begin(), named.end(), fd), named.end());
  EXPECT_NE(std::find(named.begin(), named.end(), dfd), named.end());

  // Removal clears the record before the fd closes.
  h.Remove(static_cast<uint64_t>(fh));
  EXPECT_EQ(r.kind.load(), 0u);
  EXPECT_LT(fcntl(fd, F_GETFD), 0);
}

TEST_F(RestartStateTest, AdoptRefusesAnythingButAStateMemfd) {
  int fd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  EXPECT_FALSE(RestartState::Adopt(fd).ok());
  close(fd);
  EXPECT_FALSE(RestartState::Adopt(9999).ok());
}

TEST(CloseFdsExcept, ClosesOnlyWhatIsNotKept) {
  int a = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int b = open("/dev/null", O_RDONLY | O_CLOEXEC);
  // Keep every other fd this test process has, so only b goes.
  std::vector<int> keep;
  for (int fd = 3; fd < 1024; fd++) {
    if (fd != b && fcntl(fd, F_GETFD) >= 0) keep.push_back(fd);
  }
  CloseFdsExcept(keep);
  EXPECT_GE(fcntl(a, F_GETFD), 0);
  EXPECT_LT(fcntl(b, F_GETFD), 0);
  close(a);
}

}  // namespace
}  // namespace migratefs::fs
