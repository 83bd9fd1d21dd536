#include "fs/direct_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace migratefs::fs {
namespace {

constexpr size_t kBufferAlign = 4096;

struct AlignedBuffer {
  char* data = nullptr;
  size_t size = 0;
  ~AlignedBuffer() { free(data); }
};
thread_local AlignedBuffer t_buffer;

bool Aligned(uint64_t v, uint32_t align) { return (v & (align - 1)) == 0; }

int BufferedFd(File& f) {
  int fd = f.buffered_fd.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  int flags = (f.flags & ~(O_DIRECT | O_CREAT | O_EXCL | O_TRUNC | O_NOFOLLOW)) | O_CLOEXEC;
  fd = open(f.inode.ProcPath().c_str(), flags);
  if (fd < 0) return -errno;
  int expected = -1;
  if (!f.buffered_fd.compare_exchange_strong(expected, fd)) {
    close(fd);
    fd = expected;
  }
  return fd;
}

ssize_t UnalignedWrite(File& f, const char* data, size_t len, off_t off) {
  int fd = BufferedFd(f);
  if (fd < 0) return fd;
  ssize_t n = pwrite(fd, data, len, off);
  if (n < 0) return -errno;
  if (n == 0) return 0;
  if (sync_file_range(fd, off, n,
                      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) < 0) {
    return -errno;
  }
  // DONTNEED only drops whole pages; widen to the pages we touched.
  off_t start = off & ~static_cast<off_t>(kBufferAlign - 1);
  off_t end = (off + n + kBufferAlign - 1) & ~static_cast<off_t>(kBufferAlign - 1);
  posix_fadvise(fd, start, end - start, POSIX_FADV_DONTNEED);
  return n;
}

}  // namespace

uint32_t DirectIoAlignment(int fd) {
  struct statx stx {};
  if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 && (stx.stx_mask & STATX_DIOALIGN) &&
      stx.stx_dio_offset_align != 0) {
    uint32_t a = std::max(stx.stx_dio_offset_align, stx.stx_dio_mem_align);
    // Our buffers are 4 KiB aligned; larger alignments are checked per request.
    return std::max<uint32_t>(a, 512);
  }
  return 4096;
}

char* ThreadBuffer(size_t size) {
  if (t_buffer.size >= size) return t_buffer.data;
  size_t want = std::max<size_t>(size, 1 << 20) + 2 * kBufferAlign;
  void* p = nullptr;
  if (posix_memalign(&p, kBufferAlign, want) != 0) return nullptr;
  free(t_buffer.data);
  t_buffer.data = static_cast<char*>(p);
  t_buffer.size = want;
  return t_buffer.data;
}

ssize_t DirectPwrite(File& f, const char* data, size_t len, off_t off) {
  uint32_t a = f.dio_align;
  if (!Aligned(off, a) || !Aligned(len, a) || a > kBufferAlign) return UnalignedWrite(f, data, len, off);
  const char* src = data;
  if (!Aligned(reinterpret_cast<uintptr_t>(data), kBufferAlign)) {
    char* buf = ThreadBuffer(len);
    if (buf == nullptr) return -ENOMEM;
    memcpy(buf, data, len);
    src = buf;
  }
  ssize_t n = pwrite(f.fd, src, len, off);
  return n < 0 ? -errno : n;
}

ssize_t DirectPread(File& f, size_t len, off_t off, const char** out) {
  uint32_t a = f.dio_align;
  if (a > kBufferAlign) a = kBufferAlign * ((a + kBufferAlign - 1) / kBufferAlign);
  off_t start = off & ~static_cast<off_t>(a - 1);
  off_t end = (off + len + a - 1) & ~static_cast<off_t>(a - 1);
  size_t head = off - start;
  char* buf = ThreadBuffer(end - start);
  if (buf == nullptr) return -ENOMEM;
  // A short read at EOF returns fewer bytes than asked for; that is fine.
  ssize_t n = pread(f.fd, buf, end - start, start);
  if (n < 0) return -errno;
  *out = buf + head;
  if (static_cast<size_t>(n) <= head) return 0;
  return std::min<ssize_t>(len, n - head);
}

}  // namespace migratefs::fs
