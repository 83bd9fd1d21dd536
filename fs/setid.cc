#include "fs/setid.h"

#include <linux/capability.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace migratefs::fs {
namespace {

bool CallerInGroup(fuse_req_t req, gid_t gid) {
  if (fuse_req_ctx(req)->gid == gid) return true;
  std::vector<gid_t> groups(64);
  int n = fuse_req_getgroups(req, int(groups.size()), groups.data());
  if (n > int(groups.size())) {
    groups.resize(size_t(n));
    n = fuse_req_getgroups(req, int(groups.size()), groups.data());
  }
  for (int i = 0; i < n && i < int(groups.size()); i++) {
    if (groups[size_t(i)] == gid) return true;
  }
  return false;  // also when the caller cannot be inspected: dropping is the safe side
}

// The bits a modification by a caller without CAP_FSETID removes from a file with
// `st`, as the kernel decides (setattr_should_drop_suidgid): S_ISUID always; S_ISGID
// if the group may execute, and otherwise (the old mandatory-locking mark) only if
// the caller is not in the file's group.
mode_t BitsToDrop(fuse_req_t req, const struct stat& st) {
  if (!S_ISREG(st.st_mode)) return 0;
  mode_t drop = st.st_mode & S_ISUID;
  if ((st.st_mode & S_ISGID) && ((st.st_mode & S_IXGRP) || !CallerInGroup(req, st.st_gid))) drop |= S_ISGID;
  return drop;
}

int Drop(int fd, const struct stat& st, mode_t drop) {
  if (drop == 0) return 0;
  // Through /proc: fd may be an O_PATH fd, which fchmod refuses.
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  return chmod(path.c_str(), st.st_mode & 07777 & ~drop) < 0 ? errno : 0;
}

std::string NamespaceOf(const std::string& proc_dir) {
  char buf[64];
  ssize_t n = readlink((proc_dir + "/ns/user").c_str(), buf, sizeof(buf));
  return n > 0 ? std::string(buf, size_t(n)) : std::string();
}

}  // namespace

int DropSetIdBits(fuse_req_t req, int fd) {
  struct stat st;
  if (fstat(fd, &st) < 0) return errno;
  return Drop(fd, st, BitsToDrop(req, st));
}

int DropSetIdForCaller(fuse_req_t req, int fd) {
  struct stat st;
  if (fstat(fd, &st) < 0) return errno;
  if (!S_ISREG(st.st_mode) || (st.st_mode & (S_ISUID | S_ISGID)) == 0) return 0;  // the common case: one fstat
  if (HasFsetid(fuse_req_ctx(req)->pid)) return 0;
  return Drop(fd, st, BitsToDrop(req, st));
}

bool HasFsetid(pid_t pid) {
  if (pid <= 0) return false;
  const std::string dir = "/proc/" + std::to_string(pid);
  std::ifstream status(dir + "/status");
  std::string line;
  uint64_t caps = 0;
  bool found = false;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    caps = std::stoull(line.substr(7), nullptr, 16);
    found = true;
    break;
  }
  if (!found || (caps & (uint64_t(1) << CAP_FSETID)) == 0) return false;
  // A capability held in a user namespace of its own does not count on the host's
  // files (the kernel's capable() asks the initial namespace).
  const std::string theirs = NamespaceOf(dir);
  return !theirs.empty() && theirs == NamespaceOf("/proc/self");
}

}  // namespace migratefs::fs
