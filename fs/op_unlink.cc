#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "fs/fs.h"
#include "fs/ops.h"

namespace migratefs::fs {
namespace {

void Remove(fuse_req_t req, const char* what, fuse_ino_t parent, const char* name, int flags) {
  Fs& fs = Fs::Of(req);
  Inode& dir = InodeOf(req, parent);
  HookRegistryImpl::NamespaceChange change(fs.hooks());
  if (change.AnyHooks()) {
    struct stat st;
    if (fstatat(dir.fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (int err = change.Check(st.st_dev, st.st_ino)) return ReplyErr(req, err);
    }
  }
  ResendableOp op(req, what, ResendLog::kRemovesName, dir.fd, name);
  ReplyErr(req, op.Run([&] { return unlinkat(dir.fd, name, flags) < 0 ? errno : 0; }));
}

}  // namespace

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) { Remove(req, "unlink", parent, name, 0); }

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) { Remove(req, "rmdir", parent, name, AT_REMOVEDIR); }

}  // namespace migratefs::fs
