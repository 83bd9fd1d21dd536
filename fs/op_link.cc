#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "fs/fs.h"
#include "fs/ops.h"

namespace migratefs::fs {

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  Inode& in = InodeOf(req, ino);
  Inode& dir = InodeOf(req, newparent);
  // AT_EMPTY_PATH links the O_PATH fd's inode itself (needs CAP_DAC_READ_SEARCH,
  // which the root daemon has); the /proc path is the fallback for the rest.
  ResendableOp op(req, "link", ResendLog::kCreatesName, dir.fd, newname);
  const int err = op.Run([&] {
    if (linkat(in.fd, "", dir.fd, newname, AT_EMPTY_PATH) == 0) return 0;
    if (errno != ENOENT && errno != EPERM) return errno;
    return linkat(AT_FDCWD, in.ProcPath().c_str(), dir.fd, newname, AT_SYMLINK_FOLLOW) < 0 ? errno : 0;
  });
  if (err != 0) return ReplyErr(req, err);
  fuse_entry_param e;
  if (int err = Fs::Of(req).inodes().Lookup(dir, newname, &e)) return ReplyErr(req, err);
  fuse_reply_entry(req, &e);
}

}  // namespace migratefs::fs
