#include "fs/new_node.h"

#include "fs/creds.h"
#include "fs/fs.h"

namespace migratefs::fs {

void MakeNodeAndReply(fuse_req_t req, const char* what, Inode& parent, const char* name,
                      const std::function<int(int)>& make) {
  ResendableOp op(req, what, ResendLog::kCreatesName, parent.fd, name);
  int err;
  {
    CallerIdentity as_caller(req);
    err = as_caller.error() != 0 ? as_caller.error() : op.Run([&] { return make(parent.fd); });
  }
  if (err != 0) return ReplyErr(req, err);
  fuse_entry_param e;
  if ((err = Fs::Of(req).inodes().Lookup(parent, name, &e)) != 0) return ReplyErr(req, err);
  fuse_reply_entry(req, &e);
}

}  // namespace migratefs::fs
