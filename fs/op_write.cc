#include <unistd.h>

#include <cerrno>
#include <mutex>

#include "fs/direct_io.h"
#include "fs/file.h"
#include "fs/fs.h"
#include "fs/ops.h"
#include "fs/completions.h"
#include "fs/setid.h"
#include "fs/write_behind.h"

namespace migratefs::fs {
namespace {

bool InPipe(const fuse_bufvec* bufv) { return bufv->count != 1 || (bufv->buf[0].flags & FUSE_BUF_IS_FD); }

// Without SPLICE_READ libfuse delivers the payload as one buffer in memory. With it,
// large WRITEs arrive in a pipe whose pages are the writer's own; reading them into
// the 4 KiB-aligned thread buffer is then the only copy of the data in user space.
const char* PayloadOf(fuse_bufvec* bufv, size_t len) {
  if (!InPipe(bufv)) return static_cast<const char*>(bufv->buf[0].mem) + bufv->off;
  char* mem = ThreadBuffer(len);
  if (mem == nullptr) return nullptr;
  fuse_bufvec dst = FUSE_BUFVEC_INIT(len);
  dst.buf[0].mem = mem;
  return fuse_buf_copy(&dst, bufv, FUSE_BUF_NO_SPLICE) == static_cast<ssize_t>(len) ? mem : nullptr;
}

}  // namespace

void OpWriteBuf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* bufv, off_t off, fuse_file_info* fi) {
  Fs& fs = Fs::Of(req);
  File& f = fs.handles().FileAt(fi->fh);
  size_t len = fuse_buf_size(bufv);
  fs.CountWrite(InPipe(bufv), len);
  // A write(2) the kernel sends through (direct I/O, or a set-id file under
  // HANDLE_KILLPRIV_V2) carries the writer's identity; its writeback never does.
  if (!fi->writepage) {
    if (int err = DropSetIdForCaller(req, f.fd)) return ReplyErr(req, err);
  }
  ModifyScope scope(f.inode.hook);
  ImageHook* hook = scope.hook();
  if (hook != nullptr) {
    if (int err = hook->BeforeModify()) return ReplyErr(req, err);  // libfuse drains the pipe
    if (int err = hook->BeforeChange(uint64_t(off), len)) return ReplyErr(req, err);
  }
  ssize_t n;
  const char* data = nullptr;
  if (hook == nullptr && !f.direct() && InPipe(bufv)) {
    // Nobody needs the bytes: the kernel moves them from the pipe to the page cache.
    fuse_bufvec dst = FUSE_BUFVEC_INIT(len);
    dst.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    dst.buf[0].fd = f.fd;
    dst.buf[0].pos = off;
    std::lock_guard<std::mutex> serial(f.inode.buffered_write_mu);
    n = fuse_buf_copy(&dst, bufv, static_cast<fuse_buf_copy_flags>(0));
  } else if ((data = PayloadOf(bufv, len)) == nullptr) {
    return ReplyErr(req, EIO);
  } else {
    // In phase 3 the hook may send the bytes to the peer now, so the peer's write and
    // ours overlap; it then answers through FinishWrite, failure included.
    void* token = hook != nullptr ? hook->BeginWrite(off, data, len) : nullptr;
    if (f.direct()) {
      n = DirectPwrite(f, data, len, off);
    } else {
      std::lock_guard<std::mutex> serial(f.inode.buffered_write_mu);
      n = pwrite(f.fd, data, len, off);
      if (n < 0) n = -errno;
    }
    if (token != nullptr) return hook->FinishWrite(token, n, WriteCompletion(req, n > 0 ? size_t(n) : 0));
  }
  if (n < 0) return ReplyErr(req, static_cast<int>(-n));
  // Before the reply: once the WRITE is answered the kernel may release the file,
  // and f.fd with it.
  if (!f.direct() && fs.options().write_behind) WriteBehind(f.fd, off, size_t(n));
  // The hook may acknowledge later (throttle, mirroring); the worker moves on.
  if (hook != nullptr) return hook->AfterWrite(off, data, n, WriteCompletion(req, n));
  scope.Exit();
  fuse_reply_write(req, n);
}

}  // namespace migratefs::fs
