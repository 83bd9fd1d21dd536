// The data path: O_DIRECT (aligned and not), holes, concurrent writers.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fs/device_io.h"
#include "tests/fs_test_util.h"

namespace migratefs::fs::testing {
namespace {

struct FreeDeleter {
  void operator()(char* p) const { free(p); }
};
using AlignedBuf = std::unique_ptr<char, FreeDeleter>;

AlignedBuf Aligned(size_t n) {
  void* p = nullptr;
  EXPECT_EQ(posix_memalign(&p, 4096, n), 0);
  return AlignedBuf(static_cast<char*>(p));
}

// Pages of `path` in the host page cache (mincore on a mapping of it).
size_t ResidentPages(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  struct stat st;
  fstat(fd, &st);
  size_t len = st.st_size;
  if (len == 0) {
    close(fd);
    return 0;
  }
  void* map = mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  size_t pages = (len + 4095) / 4096;
  std::vector<unsigned char> vec(pages);
  mincore(map, len, vec.data());
  munmap(map, len);
  size_t n = 0;
  for (unsigned char v : vec) n += v & 1;
  return n;
}

void DropCaches(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  fdatasync(fd);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  close(fd);
}

// noxattr: every xattr call fails with EOPNOTSUPP (the kernel got ENOSYS once and
// remembers it, so writes no longer cost a security.capability lookup each), and
// data I/O is unaffected.
TEST(FsXattr, NoxattrRefusesAttributesAndKeepsData) {
  InProcessMount m("allow_other,noxattr");
  std::string path = m.mnt() + "/f";
  int fd = open(path.c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  std::string data = Pattern(1 << 20, 3);
  for (int i = 0; i < 2; i++) {  // the first round gets ENOSYS, the second the kernel's memory of it
    for (size_t o = 0; o < data.size(); o += 8192) ASSERT_EQ(pwrite(fd, data.data() + o, 8192, o), 8192);
    char buf[16];
    errno = 0;
    EXPECT_LT(getxattr(path.c_str(), "user.a", buf, sizeof buf), 0);
    EXPECT_EQ(errno, EOPNOTSUPP);
    errno = 0;
    EXPECT_LT(setxattr(path.c_str(), "user.a", "v", 1, 0), 0);
    EXPECT_EQ(errno, EOPNOTSUPP);
    errno = 0;
    EXPECT_LT(listxattr(path.c_str(), buf, sizeof buf), 0);
    EXPECT_EQ(errno, EOPNOTSUPP);
    errno = 0;
    EXPECT_LT(removexattr(path.c_str(), "user.a"), 0);
    EXPECT_EQ(errno, EOPNOTSUPP);
  }
  ASSERT_EQ(fsync(fd), 0);
  close(fd);
  EXPECT_TRUE(ReadFile(m.src() + "/f") == data);
  char buf[16];
  EXPECT_LT(getxattr((m.src() + "/f").c_str(), "user.a", buf, sizeof buf), 0);  // nothing reached SRC
}

TEST(FsDirect, AlignedIoWorksAndBypassesTheHostCache) {
  InProcessMount m;
  std::string path = m.mnt() + "/img";
  int fd = open(path.c_str(), O_CREAT | O_RDWR | O_DIRECT, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  std::string expect(8 << 20, '\0');
  AlignedBuf buf = Aligned(1 << 20);
  std::string a = Pattern(1 << 20, 1), b = Pattern(65536, 2);
  memcpy(buf.get(), a.data(), a.size());
  ASSERT_EQ(pwrite(fd, buf.get(), a.size(), 0), static_cast<ssize_t>(a.size())) << strerror(errno);
  expect.replace(0, a.size(), a);
  memcpy(buf.get(), b.data(), b.size());
  off_t off = (4 << 20) + 4096;
  ASSERT_EQ(pwrite(fd, buf.get(), b.size(), off), static_cast<ssize_t>(b.size())) << strerror(errno);
  expect.replace(off, b.size(), b);
  ASSERT_EQ(ftruncate(fd, 8 << 20), 0);
  // Read back through the mount, O_DIRECT, in 128 KiB pieces.
  std::string got;
  for (off_t o = 0; o < (8 << 20); o += 131072) {
    ASSERT_EQ(pread(fd, buf.get(), 131072, o), 131072) << strerror(errno);
    got.append(buf.get(), 131072);
  }
  EXPECT_TRUE(got == expect);
  close(fd);
  // Neither the writes nor the reads went through the host page cache.
  EXPECT_EQ(ResidentPages(m.src() + "/img"), 0u);
  EXPECT_TRUE(ReadFile(m.src() + "/img") == expect);
}

TEST(FsDirect, UnalignedIoWorks) {
  InProcessMount m;
  std::string path = m.mnt() + "/img";
  std::string expect = Pattern(300000, 3);
  WriteFile(m.src() + "/img", expect);
  DropCaches(m.src() + "/img");
  int fd = open(path.c_str(), O_RDWR | O_DIRECT);
  ASSERT_GE(fd, 0) << strerror(errno);
  struct Piece {
    off_t off;
    size_t len;
  };
  // Odd offsets and lengths, from unaligned user memory.
  std::vector<Piece> writes = {{123, 1000}, {4095, 2}, {70000, 5000}, {299990, 20}, {512, 512}};
  std::string mem = "#" + Pattern(6000, 4);
  for (const Piece& p : writes) {
    ASSERT_EQ(pwrite(fd, mem.data() + 1, p.len, p.off), static_cast<ssize_t>(p.len)) << p.off << strerror(errno);
    if (expect.size() < p.off + p.len) expect.resize(p.off + p.len);
    expect.replace(p.off, p.len, mem.substr(1, p.len));
  }
  std::vector<Piece> reads = {{99, 777}, {4094, 4}, {69999, 5002}, {299000, 2000}, {0, 300010}};
  std::string rbuf(400000, '\0');
  for (const Piece& p : reads) {
    ssize_t want = std::min<ssize_t>(p.len, static_cast<ssize_t>(expect.size()) - p.off);
    ASSERT_EQ(pread(fd, &rbuf[1], p.len, p.off), want) << p.off;
    EXPECT_TRUE(rbuf.substr(1, want) == expect.substr(p.off, want)) << "read at " << p.off;
  }
  close(fd);
  EXPECT_EQ(ResidentPages(m.src() + "/img"), 0u);
  EXPECT_TRUE(ReadFile(m.src() + "/img") == expect);
}

TEST(FsDirect, SyncFlagsAreAccepted) {
  InProcessMount m;
  for (int flags : {O_SYNC, O_DSYNC, O_DIRECT | O_DSYNC}) {
    int fd = open((m.mnt() + "/f").c_str(), O_CREAT | O_WRONLY | flags, 0644);
    ASSERT_GE(fd, 0) << strerror(errno);
    AlignedBuf buf = Aligned(4096);
    memset(buf.get(), 'x', 4096);
    EXPECT_EQ(pwrite(fd, buf.get(), 4096, 0), 4096) << strerror(errno);
    close(fd);
  }
}

// Holes written around through the mount stay holes in SRC.
TEST(FsHoles, SurviveWritesThroughTheMount) {
  for (const char* opts : {"allow_other", "allow_other,nowriteback"}) {
    InProcessMount m(opts);
    std::string path = m.mnt() + "/sparse.img";
    int fd = open(path.c_str(), O_CREAT | O_RDWR, 0644);
    ASSERT_GE(fd, 0);
    std::string block = Pattern(65536, 5);
    ASSERT_EQ(pwrite(fd, block.data(), block.size(), 0), 65536);
    ASSERT_EQ(pwrite(fd, block.data(), block.size(), 64 << 20), 65536);
    ASSERT_EQ(fsync(fd), 0);
    off_t hole = lseek(fd, 0, SEEK_HOLE);
    EXPECT_GE(hole, 65536);
    EXPECT_LT(hole, 64 << 20) << opts;
    EXPECT_EQ(lseek(fd, hole, SEEK_DATA), 64 << 20);
    close(fd);
    int sfd = open((m.src() + "/sparse.img").c_str(), O_RDONLY);
    EXPECT_EQ(lseek(sfd, 0, SEEK_HOLE), hole);
    struct stat st;
    fstat(sfd, &st);
    EXPECT_LT(st.st_blocks * 512, 4 << 20) << "the 64 MiB file was filled in";
    close(sfd);
  }
}

// SEEK_DATA/SEEK_HOLE never report a hole where acknowledged (not yet fsynced) data
// is: with the writeback cache that data sits in the kernel's page cache, not in SRC.
// Holes where nothing was written are still reported. Also through a second,
// read-only descriptor (qemu-img map opens its own while the VM writes).
TEST(FsHoles, SeekSeesDataStillInTheWritebackCache) {
  for (const char* opts : {"allow_other", "allow_other,nowriteback"}) {
    InProcessMount m(opts);
    std::string path = m.mnt() + "/lazy.img";
    int fd = open(path.c_str(), O_CREAT | O_RDWR, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, 64 << 20), 0);
    std::string block = Pattern(4096, 9);
    ASSERT_EQ(pwrite(fd, block.data(), block.size(), 32 << 20), 4096);
    EXPECT_EQ(lseek(fd, 0, SEEK_DATA), 32 << 20) << opts;
    EXPECT_EQ(lseek(fd, 0, SEEK_HOLE), 0) << opts;
    EXPECT_EQ(lseek(fd, 32 << 20, SEEK_HOLE), (32 << 20) + 4096) << opts;
    ASSERT_EQ(pwrite(fd, block.data(), block.size(), 48 << 20), 4096);
    int rfd = open(path.c_str(), O_RDONLY);
    ASSERT_GE(rfd, 0);
    EXPECT_EQ(lseek(rfd, (32 << 20) + 4096, SEEK_DATA), 48 << 20) << opts;
    EXPECT_EQ(lseek(rfd, (48 << 20) + 4096, SEEK_DATA), -1) << opts;
    EXPECT_EQ(errno, ENXIO);
    std::string back(4096, '\0');
    EXPECT_EQ(pread(rfd, back.data(), back.size(), 48 << 20), 4096);
    EXPECT_TRUE(back == block) << "the write-back lost the cached data";
    close(rfd);
    close(fd);
    std::string src = ReadFile(m.src() + "/lazy.img");
    ASSERT_EQ(src.size(), size_t(64) << 20);
    EXPECT_TRUE(src.compare(size_t(32) << 20, 4096, block) == 0);
    EXPECT_TRUE(src.compare(size_t(48) << 20, 4096, block) == 0);
  }
}

// Several threads write interleaved blocks of one image at once, each through its
// own descriptor; every block must hold its writer's bytes.
void ConcurrentWriters(const char* opts, int open_flags) {
  InProcessMount m(opts);
  constexpr int kThreads = 6, kBlocksEach = 48, kBlock = 65536;
  std::string path = m.mnt() + "/img";
  close(open(path.c_str(), O_CREAT | O_WRONLY, 0644));
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      int fd = open(path.c_str(), O_RDWR | open_flags);
      if (fd < 0) {
        failures++;
        return;
      }
      AlignedBuf buf = Aligned(kBlock);
      for (int i = 0; i < kBlocksEach; i++) {
        int block = i * kThreads + t;
        std::string data = Pattern(kBlock, block);
        memcpy(buf.get(), data.data(), kBlock);
        if (pwrite(fd, buf.get(), kBlock, static_cast<off_t>(block) * kBlock) != kBlock) failures++;
      }
      if (fsync(fd) != 0) failures++;
      close(fd);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  std::string data = ReadFile(m.src() + "/img");
  ASSERT_EQ(data.size(), static_cast<size_t>(kThreads * kBlocksEach * kBlock));
  for (int b = 0; b < kThreads * kBlocksEach; b++) {
    EXPECT_TRUE(data.compare(static_cast<size_t>(b) * kBlock, kBlock, Pattern(kBlock, b)) == 0) << "block " << b;
  }
  EXPECT_TRUE(ReadFile(m.mnt() + "/img") == data);
}

TEST(FsConcurrent, BufferedWritersOnOneImage) { ConcurrentWriters("allow_other", 0); }
TEST(FsConcurrent, BufferedWritersWithoutWritebackCache) { ConcurrentWriters("allow_other,nowriteback", 0); }
TEST(FsConcurrent, DirectWritersOnOneImage) { ConcurrentWriters("allow_other", O_DIRECT); }
TEST(FsConcurrent, WritersWithoutSplice) {
  ConcurrentWriters("allow_other,nosplice", 0);
  ConcurrentWriters("allow_other,nosplice", O_DIRECT);
}

// Large WRITEs must reach the daemon through a pipe when splice is on (the default):
// libfuse 3.14 silently reads every request into memory when its pipe cannot hold
// max_write + 4 KiB, which unprivileged processes (no CAP_SYS_RESOURCE) cannot grow
// past 1 MiB; that copy is also where a killed worker loses requests (fs/device_io.h).
void WriteAndSync(const std::string& path, size_t bytes, int open_flags) {
  int fd = open(path.c_str(), O_CREAT | O_RDWR | open_flags, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  constexpr size_t kChunk = 1 << 20;
  AlignedBuf buf = Aligned(kChunk);
  for (size_t done = 0; done < bytes; done += kChunk) {
    std::string data = Pattern(kChunk, static_cast<uint32_t>(done / kChunk));
    memcpy(buf.get(), data.data(), kChunk);
    ASSERT_EQ(pwrite(fd, buf.get(), kChunk, static_cast<off_t>(done)), static_cast<ssize_t>(kChunk));
  }
  ASSERT_EQ(fsync(fd), 0);
  close(fd);
}

TEST(FsSplice, LargeWritesArriveInAPipe) {
  InProcessMount m("allow_other");
  WriteAndSync(m.mnt() + "/buffered", 32 << 20, 0);
  WriteAndSync(m.mnt() + "/direct", 8 << 20, O_DIRECT);
  const Fs& fs = m.session().fs();
  // Every 1 MiB O_DIRECT write yields at least one large WRITE; writeback of 32 MiB many.
  EXPECT_GE(fs.piped_writes(), 8u) << "largest WRITE " << fs.largest_write();
  EXPECT_EQ(ReadFile(m.src() + "/direct"), ReadFile(m.mnt() + "/direct"));
}

// WRITEs are held to what libfuse's pipe takes, READs are not (init_reply.h).
TEST(FsSplice, ReadsStayAtOneMebibyte) {
  InProcessMount m("allow_other");
  WriteAndSync(m.mnt() + "/img", 4 << 20, O_DIRECT);
  int fd = open((m.mnt() + "/img").c_str(), O_RDONLY | O_DIRECT);
  ASSERT_GE(fd, 0);
  AlignedBuf buf = Aligned(1 << 20);
  for (int i = 0; i < 4; i++) ASSERT_EQ(pread(fd, buf.get(), 1 << 20, off_t(i) << 20), 1 << 20);
  close(fd);
  const Fs& fs = m.session().fs();
  EXPECT_EQ(fs.largest_read(), size_t(1) << 20);
  EXPECT_EQ(fs.largest_write(), SplicedMaxWrite());
}

TEST(FsSplice, NosplicePrefaultsTheReceiveBuffers) {
  const size_t before = PrefaultedPages();
  InProcessMount m("allow_other,nosplice");
  WriteAndSync(m.mnt() + "/buffered", 16 << 20, 0);
  EXPECT_EQ(m.session().fs().piped_writes(), 0u);
  // At least one worker's whole buffer (1 MiB + its header page) was made resident
  // before the kernel copied a request into it.
  EXPECT_GE(PrefaultedPages() - before, 257u);
  std::string data = ReadFile(m.src() + "/buffered");
  ASSERT_EQ(data.size(), size_t(16) << 20);
  for (size_t i = 0; i < 16; i++) {
    EXPECT_TRUE(data.compare(i << 20, 1 << 20, Pattern(1 << 20, static_cast<uint32_t>(i))) == 0) << "MiB " << i;
  }
}

// Dirty pages of a backing file's page cache, from cachestat(2) (Linux 6.5; Debian
// 12's headers predate it, hence the raw syscall). -1 if the kernel lacks it.
long DirtyPages(const std::string& path) {
  struct Range {
    uint64_t off, len;
  } range{0, 0};  // len 0: to the end of the file
  struct Stat {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
  } st{};
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return -1;
  long rc = syscall(451 /* __NR_cachestat, x86_64 and the generic table */, fd, &range, &st, 0);
  close(fd);
  return rc == 0 ? long(st.nr_dirty) : -1;
}

// A large buffered write, once written back to the daemon (close() does that), is on
// its way to the disk: the daemon started the backing file's write-out (fs/write_behind.h)
// instead of leaving all of it for the backing file system's 30 s expiry or an fsync.
TEST(FsWriteBehind, LargeWritesLeaveTheBackingFileWritingOut) {
  for (const char* opts : {"allow_other", "allow_other,nowrite_behind"}) {
    SCOPED_TRACE(opts);
    InProcessMount m(opts);
    struct statfs sfs;
    ASSERT_EQ(statfs(m.src().c_str(), &sfs), 0);
    if (sfs.f_type == 0x01021994) GTEST_SKIP() << "SRC on tmpfs: its pages never stop being dirty";
    const std::string img = m.mnt() + "/img";
    int fd = open(img.c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    const std::string data = Pattern(1 << 20, 7);
    for (int i = 0; i < 32; i++) ASSERT_EQ(pwrite(fd, data.data(), data.size(), off_t(i) << 20), 1 << 20);
    ASSERT_EQ(close(fd), 0);  // writes the kernel's dirty pages back to the daemon
    const long dirty = DirtyPages(m.src() + "/img");
    if (dirty < 0) GTEST_SKIP() << "no cachestat(2) in this kernel";
    if (std::string(opts).find("nowrite_behind") == std::string::npos) {
      EXPECT_LT(dirty, 8192 / 4) << "pages of 32 MiB still dirty in SRC's cache";
    } else {
      // The control: without it nearly all of it waits (ext4 writes dirty pages out
      // after 30 s), so the check above can fail.
      EXPECT_GT(dirty, 8192 / 2);
    }
    EXPECT_TRUE(ReadFile(m.src() + "/img").compare(0, data.size(), data) == 0);
  }
}

}  // namespace
}  // namespace migratefs::fs::testing
