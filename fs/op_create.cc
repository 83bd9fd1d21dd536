#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <string>

#include "fs/creds.h"
#include "fs/fs.h"
#include "fs/open_file.h"
#include "fs/ops.h"

namespace migratefs::fs {

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  Fs& fs = Fs::Of(req);
  Inode& dir = InodeOf(req, parent);
  int flags = BackingFlags(fs, fi->flags);
  // Create as the caller (ownership, set-gid directories: see creds.h) with the
  // caller's own access mode, so the backing permission check matches the kernel's.
  // O_NOFOLLOW: a symlink planted in SRC must not redirect the create outside it.
  int caller_open = (fi->flags & ~(O_TRUNC | O_NOCTTY)) | O_CREAT | O_NOFOLLOW | O_CLOEXEC;
  // Only an exclusive create can fail for having happened before (resend_log.h);
  // without O_EXCL a resent create opens what the first one made.
  std::optional<ResendableOp> excl;
  if ((caller_open & O_EXCL) != 0) excl.emplace(req, "create", ResendLog::kCreatesName, dir.fd, name);
  int fd = -1;
  {
    CallerIdentity as_caller(req);
    if (as_caller.error() != 0) return ReplyErr(req, as_caller.error());
    auto create = [&] {
      fd = openat(dir.fd, name, caller_open, mode);
      return fd < 0 ? errno : 0;
    };
    if (int err = excl ? excl->Run(create) : create()) return ReplyErr(req, err);
    if (excl && excl->already_done()) fd = openat(dir.fd, name, caller_open & ~O_EXCL, mode);
  }
  if (fd < 0) return ReplyErr(req, errno);
  std::string self = "/proc/self/fd/" + std::to_string(fd);
  if ((flags & (O_ACCMODE | O_APPEND)) != (fi->flags & (O_ACCMODE | O_APPEND))) {
    // The writeback cache needs O_RDWR and no O_APPEND (open_file.h); reopen as root,
    // the caller's right to open the file is established.
    int upgraded = open(self.c_str(), flags);
    if (upgraded < 0) {
      int err = errno;
      close(fd);
      return ReplyErr(req, err);
    }
    close(fd);
    fd = upgraded;
    self = "/proc/self/fd/" + std::to_string(fd);
  }
  fuse_entry_param e;
  int path_fd = open(self.c_str(), O_PATH | O_CLOEXEC);
  int err = path_fd < 0 ? errno : fs.inodes().Adopt(path_fd, dir, name, &e);
  if (err != 0) {
    close(fd);
    return ReplyErr(req, err);
  }
  Inode& in = fs.inodes().Get(e.ino);
  // O_CREAT without O_EXCL may have opened a file that already existed (and that a
  // hook watches).
  if ((err = FinishWriteOpen(in, fd, fi->flags)) != 0) {
    close(fd);
    fs.inodes().Forget(e.ino, 1);
    return ReplyErr(req, err);
  }
  if (AttachFile(fs, in, fd, flags, fi, &err) == nullptr) {
    close(fd);
    fs.inodes().Forget(e.ino, 1);
    return ReplyErr(req, err);
  }
  if (fuse_reply_create(req, &e, fi) != 0) {
    DetachFile(fs, fi);
    fs.inodes().Forget(e.ino, 1);
  }
}

}  // namespace migratefs::fs
