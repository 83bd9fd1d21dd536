#include "fs/file.h"
#include "fs/fs.h"
#include "fs/ops.h"

namespace migratefs::fs {

// Closing the backing fd also drops flock locks held through it.
void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Fs::Of(req).handles().Remove(fi->fh);
  ReplyErr(req, 0);
}

}  // namespace migratefs::fs
