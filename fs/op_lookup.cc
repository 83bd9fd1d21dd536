#include "fs/fs.h"
#include "fs/ops.h"

namespace migratefs::fs {

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_entry_param e;
  int err = Fs::Of(req).inodes().Lookup(InodeOf(req, parent), name, &e);
  // No negative entry caching: files appear in SRC behind our back (the migration
  // receiver writes there directly), and a cached ENOENT would hide them.
  if (err != 0) return ReplyErr(req, err);
  fuse_reply_entry(req, &e);
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Fs::Of(req).inodes().Forget(ino, nlookup);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  InodeTable& t = Fs::Of(req).inodes();
  for (size_t i = 0; i < count; i++) t.Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

}  // namespace migratefs::fs
