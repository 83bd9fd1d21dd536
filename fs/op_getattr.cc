#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>

#include "fs/fs.h"
#include "fs/ops.h"

namespace migratefs::fs {

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  struct stat st;
  if (fstatat(InodeOf(req, ino).fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) return ReplyErr(req, errno);
  fuse_reply_attr(req, &st, Fs::Of(req).timeout());
}

}  // namespace migratefs::fs
