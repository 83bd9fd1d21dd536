#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "fs/file.h"
#include "fs/fs.h"
#include "fs/ops.h"

namespace migratefs::fs {

// Only SEEK_DATA and SEEK_HOLE reach us (the kernel handles the others from its own
// idea of the size). Our fd's position is never used for I/O (pread/pwrite), so
// sharing it between concurrent lseeks is harmless.
//
// The kernel does not write back its cache before sending FUSE_LSEEK: with the
// writeback cache, acknowledged buffered writes may still be dirty pages in the
// kernel, and SRC would show a hole where they are (qemu-img map/convert and
// cp --sparse would then skip data). So while any open may have dirtied pages of
// this inode (Inode::cached_writers, whichever descriptor asks), we first have the
// kernel write back [off, EOF); data before `off` cannot change the answer. The
// kernel holds the inode lock around FUSE_LSEEK, which keeps new writes out while
// we look; writeback itself does not take that lock. Without cached writers (read-
// only opens, direct I/O, nowriteback) SRC is the whole truth and this costs nothing.
void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  Fs& fs = Fs::Of(req);
  File& f = FileOf(req, fi);
  if (fs.writeback() && f.inode.cached_writers.load(std::memory_order_relaxed) > 0) {
    fs.WriteBackKernelPages(ino, off);
  }
  {
    // A copy in postcopy has holes where the source still holds data: answer as if
    // everything up to EOF were data (a copier then reads it, and the reads fetch).
    ModifyScope scope(f.inode.hook);
    if (ImageHook* hook = scope.hook(); hook != nullptr && hook->HidesData()) {
      struct stat st;
      if (fstat(f.fd, &st) < 0) return ReplyErr(req, errno);
      if (off >= st.st_size) return ReplyErr(req, ENXIO);
      return fuse_reply_lseek(req, whence == SEEK_DATA ? off : st.st_size), void();
    }
  }
  off_t res = lseek(f.fd, off, whence);
  if (res < 0) return ReplyErr(req, errno);
  fuse_reply_lseek(req, res);
}

}  // namespace migratefs::fs
