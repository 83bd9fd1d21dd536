#include "net/migration/receive_guard.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "net/peer/receive_file.h"

namespace migratefs::migration {
namespace {

class Recorder : public net::ReceiveObserver {
 public:
  void OnReceiving(const std::string& name, dev_t, ino_t) override { names.push_back(name); }
  void OnReceiveEnded(const std::string&, dev_t, ino_t, bool) override {}
  std::vector<std::string> names;
};

class GuardPartialCopiesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mfsguard.XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    dirfd_ = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY);
  }
  void TearDown() override {
    ::close(dirfd_);
    std::filesystem::remove_all(dir_);
  }
  // Creates the file; state "" = no mark. Returns false if the fs has no user xattrs.
  bool Make(const std::string& name, const std::string& state) {
    const std::string path = dir_ + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY, 0600);
    if (fd < 0) return false;
    const bool ok = state.empty() || ::fsetxattr(fd, net::kStateXattr, state.data(), state.size(), 0) == 0;
    ::close(fd);
    return ok;
  }
  std::string dir_;
  int dirfd_ = -1;
};

TEST_F(GuardPartialCopiesTest, FindsOnlyRegularFilesMarkedReceiving) {
  if (!Make("a.img", "receiving")) GTEST_SKIP() << "no user xattrs on " << dir_;
  ASSERT_TRUE(Make("vms/b.img", "receiving"));
  ASSERT_TRUE(Make("c.img", "incomplete"));  // an aborted copy is not waited for
  ASSERT_TRUE(Make("d.img", ""));            // a complete copy
  ASSERT_TRUE(Make("vms/deep/e.img", ""));
  ASSERT_EQ(::symlink("a.img", (dir_ + "/link.img").c_str()), 0);  // not followed
  ASSERT_EQ(::mkfifo((dir_ + "/fifo").c_str(), 0600), 0);           // not opened for long
  Recorder r;
  EXPECT_EQ(GuardPartialCopies(dirfd_, r), 2u);
  std::sort(r.names.begin(), r.names.end());
  EXPECT_EQ(r.names, (std::vector<std::string>{"a.img", "vms/b.img"}));
}

TEST_F(GuardPartialCopiesTest, EmptyDirectoryFindsNothing) {
  Recorder r;
  EXPECT_EQ(GuardPartialCopies(dirfd_, r), 0u);
  EXPECT_TRUE(r.names.empty());
}

}  // namespace
}  // namespace migratefs::migration
