#include "net/peer/receive_file.h"
#include "net/image_identity.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "net/peer/frame.h"
#include "net/peer/peer_client.h"
#include "net/peer/peer_test_util.h"

namespace migratefs::net {
namespace {

using testing::Exists;
using testing::TempDir;

class ReceiveFileTest : public ::testing::Test {
 protected:
  void SetUp() override { dirfd_ = ::open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY); }
  void TearDown() override { ::close(dirfd_); }
  TempDir dir_;
  int dirfd_ = -1;
};

TEST_F(ReceiveFileTest, CreatesAndReopens) {
  auto f = OpenReceiveFile(dirfd_, "a.img");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_TRUE(f.value().created);
  EXPECT_TRUE(f.value().writable);
  ASSERT_TRUE(MakeReceiveFileWritable(f.value(), "a.img").ok());
  ASSERT_TRUE(PrepareReceiveFile(f.value(), "a.img", 12345, false, "id-1").ok());
  EXPECT_TRUE(CreatedByMigration(f.value().fd));
  EXPECT_EQ(ReadImageIdentity(f.value().fd), "id-1");
  struct stat st {};
  ASSERT_EQ(::fstat(f.value().fd, &st), 0);
  EXPECT_EQ(st.st_size, 12345);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(::fcntl(f.value().fd, F_GETFL) & O_NONBLOCK, 0);
  if (f.value().direct_fd >= 0) {  // the same inode, opened for aligned direct writes
    struct stat dst {};
    ASSERT_EQ(::fstat(f.value().direct_fd, &dst), 0);
    EXPECT_EQ(dst.st_ino, st.st_ino);
    EXPECT_EQ(dst.st_dev, st.st_dev);
    EXPECT_NE(::fcntl(f.value().direct_fd, F_GETFL) & O_DIRECT, 0);
  }
  char buf[32];
  const ssize_t n = ::fgetxattr(f.value().fd, kStateXattr, buf, sizeof buf);
  EXPECT_EQ(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0), "receiving");
  CloseReceiveFile(f.value(), false);
  auto again = OpenReceiveFile(dirfd_, "a.img");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again.value().created);
  EXPECT_EQ(again.value().size_before, 12345u);
  // An existing file is read-only until admitted and made writable.
  EXPECT_FALSE(again.value().writable);
  EXPECT_EQ(::fcntl(again.value().fd, F_GETFL) & O_ACCMODE, O_RDONLY);
  EXPECT_EQ(::pwrite(again.value().fd, "x", 1, 0), -1);
  ASSERT_TRUE(MakeReceiveFileWritable(again.value(), "a.img").ok());
  EXPECT_EQ(::fcntl(again.value().fd, F_GETFL) & O_ACCMODE, O_RDWR);
  struct stat st2 {};
  ASSERT_EQ(::fstat(again.value().fd, &st2), 0);
  EXPECT_EQ(st2.st_ino, st.st_ino);
  CloseReceiveFile(again.value(), true);  // not created by this open: kept
  EXPECT_TRUE(Exists(dir_ / "a.img"));
}

TEST_F(ReceiveFileTest, RefusesSpecialFilesWithoutBlocking) {
  ASSERT_EQ(::mkfifo((dir_ / "fifo").c_str(), 0600), 0);
  auto f = OpenReceiveFile(dirfd_, "fifo");  // must not hang waiting for a writer
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().code, errc::kBadName);
  ASSERT_EQ(::mkdir((dir_ / "d").c_str(), 0700), 0);
  auto d = OpenReceiveFile(dirfd_, "d");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, errc::kBadName);
  ASSERT_EQ(::symlink("/tmp", (dir_ / "ln").c_str()), 0);
  auto l = OpenReceiveFile(dirfd_, "ln/x.img");
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.error().code, errc::kBadName);
  auto m = OpenReceiveFile(dirfd_, "missing/x.img");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, errc::kNotFound);
}

TEST_F(ReceiveFileTest, HashesHolesShortBlocksAndPastEof) {
  auto f = OpenReceiveFile(dirfd_, "h.img");
  ASSERT_TRUE(f.ok());
  const int fd = f.value().fd;
  const std::string a = testing::Pattern(4096, 1);
  ASSERT_EQ(::pwrite(fd, a.data(), a.size(), 0), 4096);
  ASSERT_EQ(::pwrite(fd, a.data(), 100, 3 * 4096), 100);  // short last block
  std::string out;
  ASSERT_EQ(HashFileBlocks(fd, 0, 6, 4096, &out), 0);
  ASSERT_EQ(out.size(), 48u);
  auto at = [&](int i) { return GetLe64(reinterpret_cast<const uint8_t*>(out.data()) + i * 8); };
  const std::string zeros(4096, '\0');
  std::string short_block = a.substr(0, 100) + std::string(4096 - 100, '\0');
  EXPECT_EQ(at(0), HashBlock(a.data(), a.size()));
  EXPECT_EQ(at(1), HashBlock(zeros.data(), zeros.size()));  // hole
  EXPECT_EQ(at(3), HashBlock(a.data(), 100));               // as the source reads it at EOF
  EXPECT_EQ(at(3), HashBlock(short_block.data(), short_block.size()));
  EXPECT_EQ(at(5), HashBlock(nullptr, 0));                  // past EOF
  CloseReceiveFile(f.value(), true);
  EXPECT_FALSE(Exists(dir_ / "h.img"));
}

TEST_F(ReceiveFileTest, WriteZerosNeverExtends) {
  auto f = OpenReceiveFile(dirfd_, "z.img");
  ASSERT_TRUE(f.ok());
  const int fd = f.value().fd;
  ASSERT_EQ(::pwrite(fd, "abcdef", 6, 0), 6);
  EXPECT_EQ(WriteZeros(fd, 2, 100), 0);
  char buf[8] = {};
  ASSERT_EQ(::pread(fd, buf, sizeof buf, 0), 6);
  EXPECT_EQ(std::string(buf, 6), std::string("ab\0\0\0\0", 6));
  CloseReceiveFile(f.value(), false);
}

}  // namespace
}  // namespace migratefs::net
