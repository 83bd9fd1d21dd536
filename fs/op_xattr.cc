#include <sys/stat.h>
#include <sys/xattr.h>

#include <cerrno>
#include <memory>
#include <string>
#include <string_view>

#include "fs/fs.h"
#include "fs/ops.h"

namespace migratefs::fs {
namespace {

// f*xattr() refuses O_PATH fds; the /proc/self/fd path reaches the same inode. On a
// symlink that path would be followed, so symlinks (which cannot carry user.*
// attributes anyway) are answered here.
bool Symlink(const Inode& in) { return in.type == S_IFLNK; }

// size 0 asks for the size; otherwise reply with the bytes.
template <typename Call>
void ReplySized(fuse_req_t req, size_t size, Call call) {
  if (size == 0) {
    ssize_t n = call(nullptr, 0);
    if (n < 0) return ReplyErr(req, errno);
    fuse_reply_xattr(req, n);
    return;
  }
  std::unique_ptr<char[]> buf(new char[size]);
  ssize_t n = call(buf.get(), size);
  if (n < 0) return ReplyErr(req, errno);
  fuse_reply_buf(req, buf.get(), n);
}

// user.migratefs.* are the daemons' own marks (a copy being received, a fenced
// source copy): through the mount they can be read but not changed, or a guest-side
// tool could lift a fence.
bool DaemonMark(const char* name) { return std::string_view(name).starts_with("user.migratefs."); }

// The kernel asks for security.capability before every write(2) to a regular file
// (file_remove_privs → cap_inode_need_killpriv; FUSE sets no SB_NOSEC, so the answer
// is never remembered). That synchronous request queues behind the writeback WRITEs
// already pending, so a buffered writer waits for writeback on every call (bonnie++
// block write ran at 0.15× native). Answering it from a negative cache here gained
// nothing measurable (bench/fuse/RESULTS.md): the time is the queue, not the lookup.
// noxattr: ENOSYS makes the kernel stop sending this kind of call for the mount.
bool Refused(fuse_req_t req) {
  if (Fs::Of(req).options().xattr) return false;
  ReplyErr(req, ENOSYS);
  return true;
}

}  // namespace

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  if (Refused(req)) return;
  Inode& in = InodeOf(req, ino);
  if (Symlink(in)) return ReplyErr(req, ENODATA);
  std::string path = in.ProcPath();
  ReplySized(req, size, [&](char* b, size_t s) { return getxattr(path.c_str(), name, b, s); });
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  if (Refused(req)) return;
  Inode& in = InodeOf(req, ino);
  if (Symlink(in)) return size == 0 ? (void)fuse_reply_xattr(req, 0) : (void)fuse_reply_buf(req, nullptr, 0);
  std::string path = in.ProcPath();
  ReplySized(req, size, [&](char* b, size_t s) { return listxattr(path.c_str(), b, s); });
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) {
  if (Refused(req)) return;
  Inode& in = InodeOf(req, ino);
  if (Symlink(in) || DaemonMark(name)) return ReplyErr(req, EPERM);
  ReplyErr(req, setxattr(in.ProcPath().c_str(), name, value, size, flags) < 0 ? errno : 0);
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  if (Refused(req)) return;
  Inode& in = InodeOf(req, ino);
  if (Symlink(in)) return ReplyErr(req, ENODATA);
  if (DaemonMark(name)) return ReplyErr(req, EPERM);
  ReplyErr(req, removexattr(in.ProcPath().c_str(), name) < 0 ? errno : 0);
}

}  // namespace migratefs::fs
