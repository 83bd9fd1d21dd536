#include <sys/stat.h>

#include <cerrno>

#include "fs/fs.h"
#include "fs/new_node.h"
#include "fs/ops.h"

namespace migratefs::fs {

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  MakeNodeAndReply(req, "mkdir", InodeOf(req, parent), name,
                   [&](int dirfd) { return mkdirat(dirfd, name, mode) < 0 ? errno : 0; });
}

}  // namespace migratefs::fs
