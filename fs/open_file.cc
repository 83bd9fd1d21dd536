#include "fs/open_file.h"

#include <fcntl.h>
#include <linux/fuse.h>
#include <unistd.h>

#include <cerrno>

#include "fs/direct_io.h"

namespace migratefs::fs {

int BackingFlags(const Fs& fs, int caller_flags) {
  int flags = caller_flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_NOFOLLOW);
  if (fs.writeback()) {
    if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
    flags &= ~O_APPEND;
  }
  return flags | O_CLOEXEC;
}

bool OpensForWrite(int caller_flags) {
  return (caller_flags & O_ACCMODE) != O_RDONLY || (caller_flags & O_TRUNC) != 0;
}

int FinishWriteOpen(Inode& in, int fd, int caller_flags) {
  bool trunc = (caller_flags & O_TRUNC) != 0;
  ModifyScope scope(in.hook);
  ImageHook* hook = scope.hook();
  if (hook != nullptr) {
    if (int err = hook->CheckWriteOpen()) return err;
    if (trunc) {
      if (int err = hook->BeforeModify()) return err;
    }
  }
  if (!trunc) return 0;
  // Linux truncates even for O_RDONLY|O_TRUNC; ftruncate needs a writable fd.
  int rc = (caller_flags & O_ACCMODE) == O_RDONLY ? truncate(in.ProcPath().c_str(), 0) : ftruncate(fd, 0);
  if (rc < 0) return errno;
  if (hook != nullptr) hook->AfterResize(0);
  return 0;
}

File* AttachFile(Fs& fs, Inode& in, int fd, int backing_flags, fuse_file_info* fi, int* err) {
  auto* f = new File(in, fd, backing_flags);
  if (f->direct()) {
    f->dio_align = DirectIoAlignment(fd);
    // FOPEN_DIRECT_IO: the kernel keeps this open's data out of the FUSE page cache
    // and passes every read and write to us, so O_DIRECT keeps its meaning.
    fi->direct_io = 1;
  } else if (OpensForWrite(fi->flags)) {
    f->cached_writer = true;
    in.cached_writers.fetch_add(1, std::memory_order_relaxed);
  }
  // Drop cached pages on open: SRC can change behind the mount (the migration
  // receiver writes images there), and stale pages would survive otherwise.
  fi->keep_cache = 0;
  int64_t fh = fs.handles().Add(f);
  if (fh < 0) {
    f->release_fd();
    delete f;
    *err = static_cast<int>(-fh);
    return nullptr;
  }
  fi->fh = static_cast<uint64_t>(fh);
  return f;
}

void DetachFile(Fs& fs, fuse_file_info* fi) { fs.handles().Remove(fi->fh); }

int ReplyOpen(fuse_req_t req, const fuse_file_info* fi) {
  if (!fi->direct_io) return fuse_reply_open(req, fi);
  // The reply libfuse 3.14's fuse_reply_open builds (fill_open), with one more flag;
  // fuse_reply_buf sends it the same way (send_reply_ok with the bytes).
  fuse_open_out out{};
  out.fh = fi->fh;
  out.open_flags = FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;  // protocol 7.36; older kernels ignore it
  if (fi->keep_cache) out.open_flags |= FOPEN_KEEP_CACHE;
  if (fi->nonseekable) out.open_flags |= FOPEN_NONSEEKABLE;
  if (fi->noflush) out.open_flags |= FOPEN_NOFLUSH;
  return fuse_reply_buf(req, reinterpret_cast<const char*>(&out), sizeof out);
}

}  // namespace migratefs::fs
