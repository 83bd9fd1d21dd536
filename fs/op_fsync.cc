#include <unistd.h>

#include <cerrno>

#include "fs/file.h"
#include "fs/fs.h"
#include "fs/ops.h"
#include "fs/completions.h"

namespace migratefs::fs {
namespace {

// In phase 3 the hook forwards the sync to the peer and completes when the peer's
// copy is durable too; the VM's fsync returns only then.
void SyncDone(fuse_req_t req, Inode& in, bool datasync) {
  ModifyScope scope(in.hook);
  if (ImageHook* hook = scope.hook()) return hook->AfterSync(datasync, StatusCompletion(req));
  scope.Exit();
  ReplyErr(req, 0);
}

}  // namespace

// With the writeback cache the kernel writes dirty pages back (as WRITEs, which the
// hook sees) before it sends FSYNC, so syncing the backing fd covers them.
void OpFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  File& f = FileOf(req, fi);
  if ((datasync ? fdatasync(f.fd) : fsync(f.fd)) < 0) return ReplyErr(req, errno);
  SyncDone(req, f.inode, datasync != 0);
}

// FLUSH comes on every close() of a descriptor. Like a local file system we do not
// make data durable here (qemu and fio fsync when they mean it); the hook still hears
// of it, as a datasync: close() promises visibility, not a metadata sync.
void OpFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  File& f = FileOf(req, fi);
  // A dup+close on the backing fd reports deferred write errors the way close(2)
  // would on the backing file system (NFS-style backings).
  int dup_fd = dup(f.fd);
  if (dup_fd < 0) return ReplyErr(req, errno);
  if (close(dup_fd) < 0 && errno != EINTR) return ReplyErr(req, errno);
  SyncDone(req, f.inode, true);
}

}  // namespace migratefs::fs
