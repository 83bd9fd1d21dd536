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

#include "net/image_identity.h"
#include "net/peer/postcopy_map.h"
#include "net/peer/receive_file.h"

namespace migratefs::migration {
namespace {

class Recorder : public net::ReceiveObserver {
 public:
  void OnReceiving(const std::string& name, dev_t, ino_t) override { names.push_back(name); }
  void OnReceiveEnded(const std::string&, dev_t, ino_t, bool) override {}
  void OnLostPostcopy(const std::string& name, dev_t, ino_t, const std::string& why) override {
    lost.push_back(name + ": " + why);
  }
  void OnRestoredPostcopy(const std::string& name, dev_t, ino_t, std::shared_ptr<net::PostcopyImage> image) override {
    restored.push_back(name);
    images.push_back(std::move(image));
  }
  std::vector<std::string> names, lost, restored;
  std::vector<std::shared_ptr<net::PostcopyImage>> images;
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
  EXPECT_EQ(GuardPartialCopies(dirfd_, r, ""), 2u);
  std::sort(r.names.begin(), r.names.end());
  EXPECT_EQ(r.names, (std::vector<std::string>{"a.img", "vms/b.img"}));
}

TEST_F(GuardPartialCopiesTest, EmptyDirectoryFindsNothing) {
  Recorder r;
  EXPECT_EQ(GuardPartialCopies(dirfd_, r, ""), 0u);
  EXPECT_TRUE(r.names.empty());
}

// A copy marked "postcopy" is taken over from its map, with the blocks the map says
// are remote; without a map, or with the map of another file, it is reported lost.
TEST_F(GuardPartialCopiesTest, PostcopyCopiesAreTakenOverFromTheirMapsOnly) {
  if (!Make("kept.img", "postcopy")) GTEST_SKIP() << "no user xattrs on " << dir_;
  ASSERT_TRUE(Make("nomap.img", "postcopy"));
  ASSERT_TRUE(Make("other.img", "postcopy"));
  const std::string state = dir_ + "/state";
  auto stat_of = [&](const std::string& name) {
    struct stat st {};
    EXPECT_EQ(::stat((dir_ + "/" + name).c_str(), &st), 0);
    return st;
  };
  auto stamp = [&](const std::string& name, const std::string& id) {
    const int fd = ::open((dir_ + "/" + name).c_str(), O_RDWR);
    ASSERT_EQ(net::WriteImageIdentity(fd, id), 0);
    ::close(fd);
  };
  const std::string id(32, 'a');
  stamp("kept.img", id);
  stamp("other.img", std::string(32, 'b'));
  const uint32_t bs = 4096;
  const std::string remote = {char(0x05)};  // blocks 0 and 2 of 4
  struct stat k = stat_of("kept.img"), o = stat_of("other.img");
  auto made = net::PostcopyMap::Create(state, k.st_dev, k.st_ino, id, 4 * bs, bs, std::chrono::seconds(7), remote);
  ASSERT_TRUE(made.ok()) << made.error().message;
  made.value()->MarkLocal(2);  // arrived before the daemon stopped
  made.value().reset();
  // A map left for other.img under an identity it no longer has.
  ASSERT_TRUE(net::PostcopyMap::Create(state, o.st_dev, o.st_ino, id, 4 * bs, bs, std::chrono::seconds(7), remote).ok());
  Recorder r;
  EXPECT_EQ(GuardPartialCopies(dirfd_, r, state), 3u);
  ASSERT_EQ(r.restored, (std::vector<std::string>{"kept.img"}));
  EXPECT_EQ(r.images[0]->RemoteRuns(), (std::vector<std::pair<uint64_t, uint64_t>>{{0, 1}}));
  std::sort(r.lost.begin(), r.lost.end());
  ASSERT_EQ(r.lost.size(), 2u);
  EXPECT_NE(r.lost[0].find("nomap.img: no map"), std::string::npos) << r.lost[0];
  EXPECT_NE(r.lost[1].find("other.img: "), std::string::npos) << r.lost[1];
  EXPECT_NE(r.lost[1].find("another file"), std::string::npos) << r.lost[1];
}

}  // namespace
}  // namespace migratefs::migration
