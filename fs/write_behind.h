// Write-behind on the backing file: the daemon starts the disk write-out of what a
// large buffered WRITE put into the backing file's page cache, without waiting for it.
//
// Why: through the mount a buffered writer's data is copied twice before it is on
// disk: the kernel writes the mount's dirty pages back to the daemon (WRITEs), and the
// daemon's copy dirties the backing file's pages, which the backing file system
// writes out on its own schedule (dirty_expire, 30 s) or at fsync. Without help the
// two run one after the other: an fsync (bonnie++'s block write phase ends with one,
// so does a guest's flush) first waits for the WRITEs and then for the whole range
// to reach the disk, while a local file system would have been writing all along. A
// profile of bonnie++ -s 2g through the mount showed both cores half idle and the
// writer in fsync most of the time.
//
// Who calls: op_write.cc, after it has answered a buffered (not O_DIRECT) WRITE of at
// least kWriteBehindMinBytes. What it does: sync_file_range(SYNC_FILE_RANGE_WRITE) on
// that range: queues the I/O and returns; it can wait only for request slots of the
// block device. Never an error for the caller: the data is already in the page cache
// and acknowledged, and fsync still waits for everything, failures included.
// Small writes are left alone: they come from random writers whose blocks are often
// rewritten soon, and early write-out would only add disk traffic.
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace migratefs::fs {

inline constexpr size_t kWriteBehindMinBytes = 512 * 1024;

// Starts write-out of [off, off + len) of `fd` if len >= kWriteBehindMinBytes.
void WriteBehind(int fd, off_t off, size_t len);

}  // namespace migratefs::fs
