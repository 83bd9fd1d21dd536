// O_DIRECT through FUSE.
//
// The kernel forwards an O_DIRECT caller's I/O to us as ordinary READ/WRITE requests
// (we set FOPEN_DIRECT_IO so none of it lands in the FUSE page cache). libfuse 3.14
// hands the WRITE payload at an unaligned address inside its receive buffer, and
// replies READs from a malloc'd buffer, so passing O_DIRECT through to the backing
// fd naively fails with EINVAL. We keep O_DIRECT on the backing fd (the caller asked
// for the host page cache to be bypassed: qemu cache=none) and:
//  - aligned requests (offset and length multiples of the backing file's DIO
//    alignment): one memcpy into / out of a 4 KiB-aligned per-thread buffer;
//  - unaligned reads: read the aligned cover into that buffer, return the middle;
//  - unaligned writes: a read-modify-write of the cover would race with concurrent
//    writers of the same block, so these go through a second, buffered fd, are
//    written back synchronously (sync_file_range) and then dropped from the page
//    cache, which is what O_DIRECT's contract (no caching, data at the device on
//    return) asks for. The kernel keeps buffered and direct I/O on one inode coherent.
#pragma once

#include <sys/types.h>

#include <cstddef>

#include "fs/file.h"

namespace migratefs::fs {

// The backing file's O_DIRECT offset alignment (statx STATX_DIOALIGN), else 4096.
uint32_t DirectIoAlignment(int fd);

// A 4 KiB-aligned buffer of at least `size` bytes owned by the calling thread;
// reallocated only when a larger size is asked for. nullptr if out of memory.
char* ThreadBuffer(size_t size);

// pwrite for an O_DIRECT File. Returns bytes written or -errno.
ssize_t DirectPwrite(File& f, const char* data, size_t len, off_t off);

// pread for an O_DIRECT File into the thread buffer; *out points at the first byte.
// Returns bytes read or -errno.
ssize_t DirectPread(File& f, size_t len, off_t off, const char** out);

}  // namespace migratefs::fs
