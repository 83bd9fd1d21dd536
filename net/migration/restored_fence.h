// Fences that outlive the daemon. `finish` fences the source copies (writes get
// EROFS) until `release`; the fence must survive a crash or restart of the source
// daemon, or both copies would be writable (invariant I6). So finish also marks each
// source file with an extended attribute, release removes it, and a starting daemon
// fences every file still marked (Engine lists them as "r1", "r2", ...).
#pragma once

#include <string>


namespace migratefs::migration {

// Value: the target the copy went to ("HOST:PORT"), for the operator.
inline constexpr char kFenceXattr[] = "user.migratefs.fenced";

// Set / remove the mark on an open file. Return 0 or an errno; a filesystem without
// user xattrs (ENOTSUP) cannot keep a fence across restarts, which callers log.
int PersistFence(int fd, const std::string& target);
int ClearFence(int fd);

}  // namespace migratefs::migration
