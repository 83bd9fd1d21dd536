#include <cerrno>

#include "fs/direct_io.h"
#include "fs/file.h"
#include "fs/fs.h"
#include "fs/ops.h"

namespace migratefs::fs {

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  File& f = FileOf(req, fi);
  Fs::Of(req).CountRead(size);
  // A read is not a modification, but the same scope keeps the hook alive while it is
  // asked, at the same cost: a target in postcopy waits here for remote blocks.
  ModifyScope scope(f.inode.hook);
  if (ImageHook* hook = scope.hook()) {
    if (int err = hook->BeforeRead(uint64_t(off), size)) return ReplyErr(req, err);
  }
  if (f.direct()) {
    const char* data = nullptr;
    ssize_t n = DirectPread(f, size, off, &data);
    if (n < 0) return ReplyErr(req, static_cast<int>(-n));
    fuse_reply_buf(req, data, n);
    return;
  }
  // libfuse preads from the fd straight into the reply; no copy in our code.
  fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = f.fd;
  buf.buf[0].pos = off;
  fuse_reply_data(req, &buf, FUSE_BUF_NO_SPLICE);
}

}  // namespace migratefs::fs
