#include <sys/stat.h>

#include <cerrno>

#include "fs/fs.h"
#include "fs/new_node.h"
#include "fs/ops.h"

namespace migratefs::fs {

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  MakeNodeAndReply(req, "mknod", InodeOf(req, parent), name,
                   [&](int dirfd) { return mknodat(dirfd, name, mode, rdev) < 0 ? errno : 0; });
}

}  // namespace migratefs::fs
