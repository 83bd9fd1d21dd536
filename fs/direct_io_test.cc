#include "fs/direct_io.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

namespace migratefs::fs {
namespace {

std::string Bytes(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i++) s[i] = static_cast<char>(seed + i * 7 + (i >> 9));
  return s;
}

// A File on a temporary O_DIRECT file (ext4 /tmp here), with its O_PATH inode.
class DirectIo : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mfs-dio-XXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    path_ = tmpl;
    close(fd);
    int path_fd = open(path_.c_str(), O_PATH);
    struct stat st;
    fstat(path_fd, &st);
    inode_ = std::make_unique<Inode>(path_fd, st.st_dev, st.st_ino, st.st_mode, 0);
    int dfd = open(path_.c_str(), O_RDWR | O_DIRECT);
    ASSERT_GE(dfd, 0) << "file system without O_DIRECT";
    file_ = std::make_unique<File>(*inode_, dfd, O_RDWR | O_DIRECT);
    file_->dio_align = DirectIoAlignment(dfd);
  }
  void TearDown() override {
    file_.reset();
    inode_.reset();
    unlink(path_.c_str());
  }
  std::string Contents() {
    int fd = open(path_.c_str(), O_RDONLY);
    std::string s(1 << 20, '\0');
    ssize_t n = pread(fd, s.data(), s.size(), 0);
    close(fd);
    s.resize(n > 0 ? n : 0);
    return s;
  }
  std::string path_;
  std::unique_ptr<Inode> inode_;
  std::unique_ptr<File> file_;
};

TEST_F(DirectIo, AlignmentIsAPowerOfTwo) {
  uint32_t a = file_->dio_align;
  EXPECT_GE(a, 512u);
  EXPECT_EQ(a & (a - 1), 0u);
}

TEST_F(DirectIo, AlignedAndUnalignedWritesLandExactly) {
  std::string model(20000, '\0');
  auto put = [&](const std::string& data, off_t off) {
    // +1: an unaligned source address, as libfuse hands us.
    std::string mem = "x" + data;
    ASSERT_EQ(DirectPwrite(*file_, mem.data() + 1, data.size(), off), static_cast<ssize_t>(data.size()));
    if (model.size() < off + data.size()) model.resize(off + data.size());
    model.replace(off, data.size(), data);
  };
  put(Bytes(8192, 1), 4096);  // aligned offset and length
  put(Bytes(100, 2), 4000);   // unaligned, across a block boundary
  put(Bytes(1, 3), 0);
  put(Bytes(5000, 4), 15000);
  EXPECT_TRUE(Contents() == model);
}

TEST_F(DirectIo, ReadsAnyRangeAndStopAtEof) {
  std::string data = Bytes(10000, 5);
  std::string mem = "x" + data;
  ASSERT_EQ(DirectPwrite(*file_, mem.data() + 1, data.size(), 0), 10000);
  struct Case {
    off_t off;
    size_t len;
    ssize_t want;
  } cases[] = {{0, 4096, 4096}, {1, 10, 10}, {4090, 20, 20}, {9990, 100, 10}, {10000, 10, 0}, {20000, 4096, 0}};
  for (const Case& c : cases) {
    const char* out = nullptr;
    ssize_t n = DirectPread(*file_, c.len, c.off, &out);
    ASSERT_EQ(n, c.want) << c.off;
    if (n > 0) {
      EXPECT_TRUE(std::string(out, n) == data.substr(c.off, n)) << c.off;
    }
  }
}

TEST(ThreadBuffer, AlignedAndGrows) {
  char* a = ThreadBuffer(100);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 4096, 0u);
  char* b = ThreadBuffer(4 << 20);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % 4096, 0u);
  b[(4 << 20) - 1] = 1;  // the whole size is usable
  EXPECT_EQ(ThreadBuffer(10), b);
}

}  // namespace
}  // namespace migratefs::fs
