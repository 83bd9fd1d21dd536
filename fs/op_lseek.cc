#include <unistd.h>

#include <cerrno>

#include "fs/file.h"
#include "fs/fs.h"
#include "fs/ops.h"

namespace migratefs::fs {

// Only SEEK_DATA and SEEK_HOLE reach us (the kernel handles the others from its own
// idea of the size). Our fd's position is never used for I/O (pread/pwrite), so
// sharing it between concurrent lseeks is harmless.
void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  off_t res = lseek(FileOf(fi).fd, off, whence);
  if (res < 0) return ReplyErr(req, errno);
  fuse_reply_lseek(req, res);
}

}  // namespace migratefs::fs
