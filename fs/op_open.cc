#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "fs/fs.h"
#include "fs/open_file.h"
#include "fs/ops.h"
#include "fs/setid.h"

namespace migratefs::fs {

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Fs& fs = Fs::Of(req);
  Inode& in = InodeOf(req, ino);
  int flags = BackingFlags(fs, fi->flags);
  // Permission was checked by the kernel (default_permissions) for the caller; we
  // reopen as root through /proc because O_PATH fds cannot be read or written.
  int fd = open(in.ProcPath().c_str(), flags);
  if (fd < 0) return ReplyErr(req, errno);
  if (OpensForWrite(fi->flags)) {
    // O_TRUNC modifies the file (FUSE_OPEN_KILL_SUIDGID, which libfuse 3.14 drops).
    int err = (fi->flags & O_TRUNC) ? DropSetIdForCaller(req, fd) : 0;
    if (err == 0) err = FinishWriteOpen(in, fd, fi->flags);
    if (err != 0) {
      close(fd);
      return ReplyErr(req, err);
    }
  }
  int err = 0;
  if (AttachFile(fs, in, fd, flags, fi, &err) == nullptr) {
    close(fd);
    return ReplyErr(req, err);
  }
  if (ReplyOpen(req, fi) != 0) DetachFile(fs, fi);  // the caller was interrupted and is gone
}

}  // namespace migratefs::fs
