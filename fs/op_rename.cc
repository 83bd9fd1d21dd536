#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include <cerrno>

#include "fs/fs.h"
#include "fs/ops.h"

namespace migratefs::fs {
namespace {

int CheckName(HookRegistryImpl::NamespaceChange& change, int dirfd, const char* name) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) return 0;  // renameat2 reports it
  return change.Check(st.st_dev, st.st_ino);
}

}  // namespace

// Both the moved file and a file the rename would replace (or exchange with) change
// their names, so both must be allowed by their hooks.
void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
              unsigned int flags) {
  Fs& fs = Fs::Of(req);
  Inode& from = InodeOf(req, parent);
  Inode& to = InodeOf(req, newparent);
  HookRegistryImpl::NamespaceChange change(fs.hooks());
  if (change.AnyHooks()) {
    if (int err = CheckName(change, from.fd, name)) return ReplyErr(req, err);
    if (int err = CheckName(change, to.fd, newname)) return ReplyErr(req, err);
  }
  ResendableOp op(req, "rename", (flags & RENAME_EXCHANGE) != 0 ? ResendLog::kExchangesNames : ResendLog::kMovesName,
                  from.fd, name, to.fd, newname);
  ReplyErr(req, op.Run([&] { return renameat2(from.fd, name, to.fd, newname, flags) < 0 ? errno : 0; }));
}

}  // namespace migratefs::fs
