#include <limits.h>
#include <unistd.h>

#include <cerrno>

#include "fs/fs.h"
#include "fs/ops.h"

namespace migratefs::fs {

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  char buf[PATH_MAX + 1];
  ssize_t n = readlinkat(InodeOf(req, ino).fd, "", buf, sizeof(buf));
  if (n < 0) return ReplyErr(req, errno);
  if (n == sizeof(buf)) return ReplyErr(req, ENAMETOOLONG);
  buf[n] = '\0';
  fuse_reply_readlink(req, buf);
}

}  // namespace migratefs::fs
