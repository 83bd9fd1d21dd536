// What open and create share: how a caller's open flags map onto the backing file,
// the hook checks of a write-open, and the File that fi->fh points to.
#pragma once

#include <fuse_lowlevel.h>

#include "fs/file.h"
#include "fs/fs.h"

namespace migratefs::fs {

// Flags for opening the backing file on behalf of `caller_flags`.
//  - O_DIRECT, O_SYNC, O_DSYNC, O_NOATIME stay: the caller's durability and caching
//    contract is the backing file's.
//  - O_TRUNC is removed and done separately (see FinishWriteOpen) so a hook can veto
//    it before anything changes; O_CREAT/O_EXCL/O_NOCTTY were consumed by the kernel.
//  - With the writeback cache the kernel reads pages back to fill partial writes,
//    and appends at the size it tracks itself, so O_WRONLY becomes O_RDWR and
//    O_APPEND is dropped (an O_APPEND backing fd would put writeback data at EOF).
int BackingFlags(const Fs& fs, int caller_flags);

// True if the open may modify the file (CheckWriteOpen applies).
bool OpensForWrite(int caller_flags);

// For a write-open: asks the hook (CheckWriteOpen, and BeforeModify for O_TRUNC),
// then truncates for O_TRUNC and reports AfterResize(0). Returns 0 or an errno; on
// error nothing was modified.
int FinishWriteOpen(Inode& in, int fd, int caller_flags);

// Wraps fd in a File recorded in the handle table, fills fi (fh, direct_io,
// keep_cache). Returns nullptr with *err = EMFILE when the table is full (fd is
// still the caller's then).
File* AttachFile(Fs& fs, Inode& in, int fd, int backing_flags, fuse_file_info* fi, int* err);

// Undoes AttachFile when the reply could not be sent (the caller is gone).
void DetachFile(Fs& fs, fuse_file_info* fi);

// fuse_reply_open, plus FOPEN_PARALLEL_DIRECT_WRITES for a direct_io open, which
// libfuse 3.14's fuse_file_info cannot express. Without it the kernel takes the
// inode lock exclusively around every direct write (fuse_direct_write_iter), so the
// synchronous writes of several threads (QEMU's aio=threads pool, fio psync jobs)
// reach us one at a time, each waiting for the previous one's reply, which in phase 3
// includes the peer's ack. With it the kernel still serialises writes that extend the
// file; the others run in parallel, and our hooks already handle concurrent writes
// (libaio gets the same concurrency without the flag). Returns fuse_reply_*'s result.
int ReplyOpen(fuse_req_t req, const fuse_file_info* fi);

}  // namespace migratefs::fs
