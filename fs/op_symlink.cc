#include <unistd.h>

#include <cerrno>

#include "fs/fs.h"
#include "fs/new_node.h"
#include "fs/ops.h"

namespace migratefs::fs {

// The target is stored verbatim; the kernel resolves it relative to the mount, so a
// symlink can never lead a caller out of MNT into the daemon's view of SRC.
void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  MakeNodeAndReply(req, "symlink", InodeOf(req, parent), name,
                   [&](int dirfd) { return symlinkat(link, dirfd, name) < 0 ? errno : 0; });
}

}  // namespace migratefs::fs
