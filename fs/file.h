// Per-open state (fuse_file_info::fh).
#pragma once

#include <fuse_lowlevel.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

#include "fs/inode.h"

namespace migratefs::fs {

struct File {
  File(Inode& inode, int fd, int flags) : inode(inode), fd(fd), flags(flags) {}
  ~File() {
    if (cached_writer) inode.cached_writers.fetch_sub(1, std::memory_order_relaxed);
    if (fd >= 0) close(fd);
    int b = buffered_fd.load();
    if (b >= 0) close(b);
  }
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  bool direct() const { return (flags & O_DIRECT) != 0; }
  // Makes the destructor leave fd open (it stays the caller's).
  void release_fd() { fd = -1; }

  Inode& inode;
  int fd;           // opened with the caller's flags (O_DIRECT, O_SYNC, O_DSYNC kept)
  const int flags;  // as opened on the backing file
  // O_DIRECT only: offset/length/memory alignment the backing file needs
  // (statx STATX_DIOALIGN; 4096 when the kernel does not say).
  uint32_t dio_align = 4096;
  // Counted in inode.cached_writers (set once by AttachFile).
  bool cached_writer = false;
  // O_DIRECT only: a second fd without O_DIRECT, opened on first need, for requests
  // that cannot be aligned (see direct_io.h).
  std::atomic<int> buffered_fd{-1};
};


}  // namespace migratefs::fs
