#include <sys/statvfs.h>

#include <cerrno>

#include "fs/fs.h"
#include "fs/ops.h"

namespace migratefs::fs {

void OpStatfs(fuse_req_t req, fuse_ino_t ino) {
  struct statvfs st;
  if (fstatvfs(InodeOf(req, ino).fd, &st) < 0) return ReplyErr(req, errno);
  fuse_reply_statfs(req, &st);
}

}  // namespace migratefs::fs
