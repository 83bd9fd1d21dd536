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
// (file_remove_privs → cap_inode_need_killpriv); nearly always it is absent. Once a
// lookup through the mount found it absent, the answer comes from Inode::caps_xattr
// without the procfs path walk and the backing getxattr, until a setxattr or
// removexattr of it through the mount (or the kernel killing it on a write, which
// is a removexattr) changes it. Changes made to SRC behind the daemon's back are not
// seen, as with every other attribute the kernel caches (README: SRC belongs to the
// daemon). Only a round trip remains; ENOSYS would stop the kernel asking, but for
// every attribute of the mount (libvirt keeps image owners in trusted.* ones).
constexpr std::string_view kCaps = "security.capability";
constexpr uint64_t kCapsAbsent = 1;

void NoteCapsChanged(Inode& in, const char* name) {
  if (name != kCaps) return;
  uint64_t v = in.caps_xattr.load(std::memory_order_relaxed);
  // Next generation, absent bit clear: (g<<1 | b | 1) + 1 == (g+1) << 1.
  while (!in.caps_xattr.compare_exchange_weak(v, (v | kCapsAbsent) + 1, std::memory_order_acq_rel)) {
  }
}

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
  const bool caps = name == kCaps;
  uint64_t seen = in.caps_xattr.load(std::memory_order_acquire);
  if (caps && (seen & kCapsAbsent)) return ReplyErr(req, ENODATA);
  std::string path = in.ProcPath();
  ReplySized(req, size, [&](char* b, size_t s) {
    ssize_t n = getxattr(path.c_str(), name, b, s);
    if (n < 0 && errno == ENODATA && caps) {
      int e = errno;
      // Fails if a change through the mount came in since `seen`: stay unknown.
      in.caps_xattr.compare_exchange_strong(seen, seen | kCapsAbsent, std::memory_order_acq_rel);
      errno = e;
    }
    return n;
  });
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
  int err = setxattr(in.ProcPath().c_str(), name, value, size, flags) < 0 ? errno : 0;
  NoteCapsChanged(in, name);
  ReplyErr(req, err);
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  if (Refused(req)) return;
  Inode& in = InodeOf(req, ino);
  if (Symlink(in)) return ReplyErr(req, ENODATA);
  if (DaemonMark(name)) return ReplyErr(req, EPERM);
  int err = removexattr(in.ProcPath().c_str(), name) < 0 ? errno : 0;
  NoteCapsChanged(in, name);
  ReplyErr(req, err);
}

}  // namespace migratefs::fs
