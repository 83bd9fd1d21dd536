// Completions that turn a hook's deferred answer into the FUSE reply.
#pragma once

#include <fuse_lowlevel.h>

#include "migratefs/image_hook.h"

namespace migratefs::fs {

// Replies fuse_reply_write(req, n) on success, the errno otherwise.
inline Completion WriteCompletion(fuse_req_t req, size_t n) {
  return Completion(
      [](void* ctx, uint64_t arg, int err) {
        auto r = static_cast<fuse_req_t>(ctx);
        if (err != 0) {
          fuse_reply_err(r, err);
        } else {
          fuse_reply_write(r, arg);
        }
      },
      req, n);
}

// Replies with a bare status (fsync, fdatasync, flush).
inline Completion StatusCompletion(fuse_req_t req) {
  return Completion([](void* ctx, uint64_t, int err) { fuse_reply_err(static_cast<fuse_req_t>(ctx), err); }, req,
                    0);
}

}  // namespace migratefs::fs
