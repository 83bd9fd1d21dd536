// Open files and directories by fh. An fh is the slot of a HandleRecord in the
// RestartState, so a restarted worker serves the fh values the kernel already holds
// (restart_state.h says why the records are always consistent).
#pragma once

#include <fuse_lowlevel.h>

#include <cstdint>
#include <mutex>

#include "fs/dir.h"
#include "fs/file.h"
#include "fs/inode.h"
#include "fs/restart_state.h"
#include "fs/slot_index.h"

namespace migratefs::fs {

class HandleTable {
 public:
  explicit HandleTable(RestartState* state) : state_(state) {}
  ~HandleTable();
  HandleTable(const HandleTable&) = delete;
  HandleTable& operator=(const HandleTable&) = delete;

  // After a restart, once `inodes` is restored: a File or Dir for every live record.
  void Restore(InodeTable& inodes);

  // Records f (or d) and returns its fh, or -errno (EMFILE: the table is full; the
  // caller still owns the object then).
  int64_t Add(File* f);
  int64_t Add(Dir* d);
  File& FileAt(uint64_t fh) { return *files_.Get(fh); }
  Dir& DirAt(uint64_t fh) { return *dirs_.Get(fh); }
  // Frees the record, then deletes the object (which closes its fd).
  void Remove(uint64_t fh);

 private:
  int64_t Record(HandleKind kind, int fd, const Inode* in, int flags, bool cached_writer);

  RestartState* state_;
  std::mutex mu_;  // slot allocation
  SlotIndex<File> files_;
  SlotIndex<Dir> dirs_;
};

}  // namespace migratefs::fs
