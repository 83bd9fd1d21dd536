#include <unistd.h>

#include <cerrno>

#include "fs/file.h"
#include "fs/fs.h"
#include "fs/ops.h"
#include "fs/setid.h"

namespace migratefs::fs {

// The backing file system copies (or reflinks) without the data passing through us.
// A hook needs the bytes of every write, so when the destination is watched we
// answer EOPNOTSUPP: the kernel then falls back to reading and writing through the
// mount, and the hook sees ordinary WRITEs. (Not ENOSYS: that would switch
// copy_file_range off for the whole mount.) A watched source is refused the same way:
// its hook may have to see the reads (a target in postcopy fetches remote blocks).
void OpCopyFileRange(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in, fuse_ino_t ino_out,
                     off_t off_out, fuse_file_info* fi_out, size_t len, int flags) {
  File& in = FileOf(req, fi_in);
  File& out = FileOf(req, fi_out);
  ModifyScope scope(out.inode.hook);
  if (scope.hook() != nullptr || in.inode.hook.load(std::memory_order_acquire) != nullptr)
    return ReplyErr(req, EOPNOTSUPP);
  if (int err = DropSetIdForCaller(req, out.fd)) return ReplyErr(req, err);
  ssize_t n = copy_file_range(in.fd, &off_in, out.fd, &off_out, len, flags);
  if (n < 0) return ReplyErr(req, errno);
  scope.Exit();
  fuse_reply_write(req, n);
}

}  // namespace migratefs::fs
