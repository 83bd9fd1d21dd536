// Dropping the set-user-ID and set-group-ID bits of a file an unprivileged caller
// modifies.
//
// On a local file system the kernel clears S_ISUID, and S_ISGID (see DropSetIdBits),
// whenever a process without CAP_FSETID writes, truncates or fallocates a
// regular file (file_remove_privs, should_remove_suid): otherwise anybody allowed to
// write a setuid-root program could put code in it and keep the bit. This daemon
// modifies the backing files as root, and root has CAP_FSETID, so the backing file
// system never clears them for us. With FUSE_HANDLE_KILLPRIV_V2 (init_reply.h) the
// kernel leaves the job to the server and tells it the caller's identity:
//  - SETATTR of a size arrives with FATTR_KILL_SUIDGID (libfuse 3.14 hands it over as
//    FUSE_SET_ATTR_KILL_SUID) when the caller lacks CAP_FSETID: DropSetIdBits.
//  - WRITE (a write(2) the kernel sends through, not its writeback), OPEN with
//    O_TRUNC, FALLOCATE and COPY_FILE_RANGE carry flags libfuse 3.14 drops (or none):
//    DropSetIdForCaller asks the caller's capabilities itself.
// chown is not here: the backing chown(2) clears the bits for root as well.
//
// Who calls: the op_*.cc handlers named above, before they modify the file. Cost: one
// fstat, and /proc reads only when the file has one of the bits.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/types.h>

namespace migratefs::fs {

// For a caller the kernel found without CAP_FSETID: clears, on the regular file open
// at fd (any kind of fd, O_PATH included), S_ISUID, and S_ISGID if the group may
// execute or the caller is not in the file's group (the kernel's rule). Returns 0
// (also when there was nothing to clear) or an errno.
int DropSetIdBits(fuse_req_t req, int fd);

// DropSetIdBits, unless the request's caller holds CAP_FSETID in this daemon's user
// namespace. A caller that cannot be inspected (gone, another pid namespace) counts
// as unprivileged: clearing the bits is the safe mistake.
int DropSetIdForCaller(fuse_req_t req, int fd);

// True if the process `pid` (a thread id is fine) has CAP_FSETID in its effective set
// and shares this process's user namespace.
bool HasFsetid(pid_t pid);

}  // namespace migratefs::fs
