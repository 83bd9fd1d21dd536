#include <unistd.h>

#include <cerrno>

#include "fs/direct_io.h"
#include "fs/file.h"
#include "fs/fs.h"
#include "fs/ops.h"
#include "fs/sync_reply.h"

namespace migratefs::fs {
namespace {

// SPLICE_READ is off (op_init.cc), so libfuse delivers the payload as one buffer in
// memory. Anything else (a future libfuse) is gathered into the thread buffer.
const char* PayloadOf(fuse_bufvec* bufv, size_t len) {
  if (bufv->count == 1 && !(bufv->buf[0].flags & FUSE_BUF_IS_FD)) {
    return static_cast<const char*>(bufv->buf[0].mem) + bufv->off;
  }
  char* mem = ThreadBuffer(len);
  if (mem == nullptr) return nullptr;
  fuse_bufvec dst = FUSE_BUFVEC_INIT(len);
  dst.buf[0].mem = mem;
  return fuse_buf_copy(&dst, bufv, FUSE_BUF_NO_SPLICE) == static_cast<ssize_t>(len) ? mem : nullptr;
}

}  // namespace

void OpWriteBuf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* bufv, off_t off, fuse_file_info* fi) {
  File& f = FileOf(fi);
  size_t len = fuse_buf_size(bufv);
  const char* data = PayloadOf(bufv, len);
  if (data == nullptr) return ReplyErr(req, EIO);

  ModifyScope scope(f.inode.hook);
  ImageHook* hook = scope.hook();
  if (hook != nullptr) {
    if (int err = hook->BeforeModify()) return ReplyErr(req, err);
  }
  ssize_t n;
  if (f.direct()) {
    n = DirectPwrite(f, data, len, off);
  } else {
    n = pwrite(f.fd, data, len, off);
    if (n < 0) n = -errno;
  }
  if (n < 0) return ReplyErr(req, static_cast<int>(-n));
  // The hook may acknowledge later (throttle, mirroring); the worker moves on.
  if (hook != nullptr) return hook->AfterWrite(off, data, n, WriteCompletion(req, n));
  scope.Exit();
  fuse_reply_write(req, n);
}

}  // namespace migratefs::fs
