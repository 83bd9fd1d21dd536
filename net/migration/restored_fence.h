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

// A copy handed over in postcopy (hybrid finish) also carries this mark until the
// target has every block. Value: the migration's restart-journal entry
// (EncodeJournal of a document holding just it), so a daemon that restarts from
// nothing (the memfd journal died with its supervisor) takes the push up again
// instead of leaving the target's reads to stall until their postcopy timeout.
inline constexpr char kPostcopyXattr[] = "user.migratefs.postcopy";

// Set / remove the mark on an open file. Return 0 or an errno; a filesystem without
// user xattrs (ENOTSUP) cannot keep a fence across restarts, which callers log.
int PersistFence(int fd, const std::string& target);
int ClearFence(int fd);  // also clears the postcopy mark
int PersistPostcopyMark(int fd, const std::string& journal_doc);
int ClearPostcopyMark(int fd);

}  // namespace migratefs::migration
