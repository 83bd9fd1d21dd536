// Runs a node-creating syscall with the calling process's identity.
//
// New files, directories, symlinks and nodes must belong to the caller, exactly as if
// the caller had created them in SRC directly. We switch this worker thread's file
// system identity (setfsuid/setfsgid plus its supplementary groups) around the
// creating syscall instead of chown()ing afterwards, because then the backing file
// system itself applies every ownership rule: set-group-ID directories, default
// ACLs, quotas charged to the right user, and no moment in which the new file
// belongs to root. Linux credentials are per thread at the syscall level; the glibc
// wrappers for setgroups() broadcast to all threads, so raw syscalls are used.
//
// Permission to create was already checked by the kernel (default_permissions); the
// backing file system checks it again for the same identity.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/types.h>

namespace migratefs::fs {

class CallerIdentity {
 public:
  explicit CallerIdentity(fuse_req_t req);
  ~CallerIdentity();
  CallerIdentity(const CallerIdentity&) = delete;
  CallerIdentity& operator=(const CallerIdentity&) = delete;

  // 0, or the errno that made switching impossible (then nothing was switched).
  int error() const { return error_; }

 private:
  bool switched_ = false;
  int error_ = 0;
};

}  // namespace migratefs::fs
