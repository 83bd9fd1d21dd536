#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "fs/file.h"
#include "fs/fs.h"
#include "fs/ops.h"
#include "fs/setid.h"

namespace migratefs::fs {
namespace {

int Truncate(Inode& in, File* f, off_t size) {
  ModifyScope scope(in.hook);
  ImageHook* hook = scope.hook();
  if (hook != nullptr) {
    if (int err = hook->BeforeModify()) return err;
    if (int err = hook->BeforeChange(uint64_t(size), 0)) return err;
  }
  int rc = f != nullptr ? ftruncate(f->fd, size) : truncate(in.ProcPath().c_str(), size);
  if (rc < 0) return errno;
  if (hook != nullptr) hook->AfterResize(size);
  return 0;
}

timespec TimeArg(int to_set, int set_bit, int now_bit, const timespec& value) {
  if (to_set & now_bit) return timespec{0, UTIME_NOW};
  if (to_set & set_bit) return value;
  return timespec{0, UTIME_OMIT};
}

}  // namespace

// The kernel (default_permissions) has already decided whether the caller may do
// this; we run as root, so the backing calls only fail for real reasons (EROFS,
// ENOSPC, EFBIG, ...), which are passed back unchanged.
void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  Inode& in = InodeOf(req, ino);
  // fi is set for f*() calls; on a directory its fh is a directory stream, not a File.
  File* f = (fi != nullptr && in.type == S_IFREG) ? &FileOf(req, fi) : nullptr;

  if (to_set & FUSE_SET_ATTR_MODE) {
    int rc = f != nullptr ? fchmod(f->fd, attr->st_mode) : chmod(in.ProcPath().c_str(), attr->st_mode);
    if (rc < 0) return ReplyErr(req, errno);
  }
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
    gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
    if (fchownat(in.fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) return ReplyErr(req, errno);
  }
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (in.type != S_IFREG) return ReplyErr(req, in.type == S_IFDIR ? EISDIR : EINVAL);
    if (int err = Truncate(in, f, attr->st_size)) return ReplyErr(req, err);
  }
  // FATTR_KILL_SUIDGID (HANDLE_KILLPRIV_V2, setid.h): the kernel found the caller
  // without CAP_FSETID; libfuse 3.14 passes the bit on as FUSE_SET_ATTR_KILL_SUID.
  if ((to_set & FUSE_SET_ATTR_KILL_SUID) && in.type == S_IFREG) {
    if (int err = DropSetIdBits(req, f != nullptr ? f->fd : in.fd)) return ReplyErr(req, err);
  }
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
    timespec tv[2] = {TimeArg(to_set, FUSE_SET_ATTR_ATIME, FUSE_SET_ATTR_ATIME_NOW, attr->st_atim),
                      TimeArg(to_set, FUSE_SET_ATTR_MTIME, FUSE_SET_ATTR_MTIME_NOW, attr->st_mtim)};
    int rc = f != nullptr ? futimens(f->fd, tv) : utimensat(in.fd, "", tv, AT_EMPTY_PATH);
    if (rc < 0) return ReplyErr(req, errno);
  }
  // FUSE_SET_ATTR_CTIME: the backing file system keeps its own ctime.
  OpGetattr(req, ino, fi);
}

}  // namespace migratefs::fs
