#include <sys/file.h>

#include <cerrno>

#include "fs/file.h"
#include "fs/fs.h"
#include "fs/ops.h"

namespace migratefs::fs {

// flock locks belong to an open file description; each FUSE open has its own backing
// fd, so taking the lock on that fd gives the same semantics, and makes the lock
// visible to processes using SRC directly. A blocking request holds one worker
// thread until the lock is granted.
void OpFlock(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, int op) {
  ReplyErr(req, flock(FileOf(req, fi).fd, op) < 0 ? errno : 0);
}

}  // namespace migratefs::fs
