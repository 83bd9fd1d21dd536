#include "fs/device_io.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>

#include "fs/init_reply.h"

namespace migratefs::fs {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kLibfuseMaxWrite = size_t(1) << 20;  // FUSE_MAX_MAX_PAGES (256) pages
constexpr size_t kLibfuseHeaderRoom = kPage;          // FUSE_BUFFER_HEADER_SIZE

std::atomic<size_t> g_prefaulted_pages{0};

// The buffer this thread last made resident. libfuse keeps one receive buffer per
// worker thread for the thread's life, so this is touched once per thread.
thread_local const void* t_resident_buf = nullptr;
thread_local size_t t_resident_len = 0;

void MakeResident(void* buf, size_t len) {
  if (buf == t_resident_buf && len <= t_resident_len) return;
  // A write fault per page: a read would map the shared zero page, which the
  // kernel's copy (it writes) would have to fault away again.
  volatile char* p = static_cast<volatile char*>(buf);
  size_t pages = 0;
  for (size_t i = 0; i < len; i += kPage, pages++) p[i] = 0;
  if (len != 0) p[len - 1] = 0;
  g_prefaulted_pages.fetch_add(pages, std::memory_order_relaxed);
  t_resident_buf = buf;
  t_resident_len = len;
}

ssize_t Writev(int fd, iovec* iov, int count, void*) {
  AmendInitReply(iov, count);
  return writev(fd, iov, count);
}

ssize_t Read(int fd, void* buf, size_t len, void*) {
  MakeResident(buf, len);
  return read(fd, buf, len);
}

ssize_t Splice(int fd_in, off_t* off_in, int fd_out, off_t* off_out, size_t len, unsigned int flags, void*) {
  return splice(fd_in, off_in, fd_out, off_out, len, flags);
}

}  // namespace

int InstallDeviceIo(fuse_session* se, int fd) {
  static const fuse_custom_io io = {Writev, Read, Splice, Splice};
  return fuse_session_custom_io(se, &io, fd);
}

size_t SplicedMaxWrite() {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return 0;
  size_t best = 0;
  if (fcntl(p[0], F_SETPIPE_SZ, int(kLibfuseMaxWrite + kLibfuseHeaderRoom)) >= 0) {
    best = kLibfuseMaxWrite;
  } else {
    // Pipe sizes are powers of two pages; the largest this process may make.
    for (size_t size = kLibfuseMaxWrite; size >= 2 * kPage; size /= 2) {
      const int got = fcntl(p[0], F_SETPIPE_SZ, int(size));
      if (got >= int(size)) {
        best = size_t(got) - kLibfuseHeaderRoom;
        break;
      }
    }
  }
  close(p[0]);
  close(p[1]);
  return best > kLibfuseMaxWrite ? kLibfuseMaxWrite : best;
}

size_t PrefaultedPages() { return g_prefaulted_pages.load(std::memory_order_relaxed); }

}  // namespace migratefs::fs
