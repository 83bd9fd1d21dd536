// Shared tail of mknod, mkdir and symlink: create as the caller, then reply with the
// new entry.
#pragma once

#include <fuse_lowlevel.h>

#include <functional>

#include "fs/inode.h"

namespace migratefs::fs {

// Runs make(parent_dirfd) under the caller's identity (creds.h); it returns 0 or a
// positive errno. On success replies with the looked-up entry.
// `what` names the op (mkdir, mknod, symlink): a resent request whose node the
// dead worker had already made is answered with that node (resend_log.h).
void MakeNodeAndReply(fuse_req_t req, const char* what, Inode& parent, const char* name,
                      const std::function<int(int)>& make);

}  // namespace migratefs::fs
