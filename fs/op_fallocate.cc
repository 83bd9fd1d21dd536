#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>

#include <cerrno>

#include "fs/file.h"
#include "fs/fs.h"
#include "fs/ops.h"
#include "fs/setid.h"

namespace migratefs::fs {

// What the hook hears:
//  - PUNCH_HOLE, ZERO_RANGE: AfterZero(off, len), the range now reads as zeros;
//  - any mode that grows the file (no KEEP_SIZE): AfterResize(new size);
//  - plain allocation changes no byte a reader can see: nothing more.
// COLLAPSE_RANGE and INSERT_RANGE shift data, which the hook contract cannot describe;
// on a watched file they fail with EOPNOTSUPP (callers fall back to copying).
void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, fuse_file_info* fi) {
  File& f = FileOf(req, fi);
  if (int err = DropSetIdForCaller(req, f.fd)) return ReplyErr(req, err);
  ModifyScope scope(f.inode.hook);
  ImageHook* hook = scope.hook();
  off_t old_size = 0;
  if (hook != nullptr) {
    if (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)) return ReplyErr(req, EOPNOTSUPP);
    if (int err = hook->BeforeModify()) return ReplyErr(req, err);
    if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
      if (int err = hook->BeforeChange(uint64_t(offset), uint64_t(length))) return ReplyErr(req, err);
    }
    struct stat st;
    if (fstat(f.fd, &st) < 0) return ReplyErr(req, errno);
    old_size = st.st_size;
  }
  if (fallocate(f.fd, mode, offset, length) < 0) return ReplyErr(req, errno);
  if (hook != nullptr) {
    if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) hook->AfterZero(offset, length);
    if (!(mode & FALLOC_FL_KEEP_SIZE) && offset + length > old_size) hook->AfterResize(offset + length);
  }
  scope.Exit();
  ReplyErr(req, 0);
}

}  // namespace migratefs::fs
