#include "fs/creds.h"

#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace migratefs::fs {
namespace {

constexpr int kMaxGroups = 256;

// The daemon's own supplementary groups, restored after each switch.
const std::vector<gid_t>& DaemonGroups() {
  static const std::vector<gid_t> groups = [] {
    std::vector<gid_t> g(kMaxGroups);
    int n = getgroups(kMaxGroups, g.data());
    g.resize(n < 0 ? 0 : n);
    return g;
  }();
  return groups;
}

// setfsuid/setfsgid report the previous id and never fail loudly: verify by
// reading the id back (passing an invalid id is a read-only query).
bool SetFsUid(uid_t uid) {
  syscall(SYS_setfsuid, uid);
  return static_cast<uid_t>(syscall(SYS_setfsuid, static_cast<uid_t>(-1))) == uid;
}
bool SetFsGid(gid_t gid) {
  syscall(SYS_setfsgid, gid);
  return static_cast<gid_t>(syscall(SYS_setfsgid, static_cast<gid_t>(-1))) == gid;
}

}  // namespace

CallerIdentity::CallerIdentity(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  // Unprivileged daemons cannot switch; their files belong to them, as in any
  // user-space file system. Root callers already match root's identity.
  if (geteuid() != 0 || (ctx->uid == 0 && ctx->gid == 0)) return;
  DaemonGroups();  // capture before the first switch
  gid_t groups[kMaxGroups];
  int n = fuse_req_getgroups(req, kMaxGroups, groups);
  if (n < 0 || n > kMaxGroups) n = 0;  // process gone or too many: primary group only
  if (syscall(SYS_setgroups, n, groups) < 0) {
    error_ = errno;
    return;
  }
  switched_ = true;
  if (!SetFsGid(ctx->gid) || !SetFsUid(ctx->uid)) error_ = EPERM;
}

CallerIdentity::~CallerIdentity() {
  if (!switched_) return;
  SetFsUid(geteuid());
  SetFsGid(getegid());
  syscall(SYS_setgroups, DaemonGroups().size(), DaemonGroups().data());
}

}  // namespace migratefs::fs
