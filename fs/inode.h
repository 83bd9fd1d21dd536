// The inode table: one Inode per backing (st_dev, st_ino), holding an O_PATH fd.
//
// FUSE node ids are record slots of the RestartState + 2 (the root is FUSE_ROOT_ID),
// so a restarted worker understands the ids the kernel already holds. The kernel
// counts every entry we hand out (lookup, create, mkdir, readdirplus, ...) and gives
// the count back with FORGET; an Inode lives until that count drops to zero. Holding
// an O_PATH fd keeps the backing inode alive, so its number cannot be reused by the
// backing file system while we still map it. Every change to an Inode's count,
// parent or name is written to its record before the caller replies.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "fs/hook_registry.h"
#include "fs/restart_state.h"
#include "fs/slot_index.h"

namespace migratefs::fs {

struct Inode {
  Inode(int fd, dev_t dev, ino_t ino, mode_t mode, uint32_t slot)
      : fd(fd), dev(dev), ino(ino), type(mode & S_IFMT), slot(slot) {}
  ~Inode();
  Inode(const Inode&) = delete;
  Inode& operator=(const Inode&) = delete;

  const int fd;  // O_PATH | O_NOFOLLOW
  const dev_t dev;
  const ino_t ino;
  const mode_t type;  // S_IFMT bits; a backing inode never changes type
  const uint32_t slot;  // its InodeRecord (kRootSlot for the root)
  HookCell hook{nullptr};
  // Opens through the mount that may leave dirty pages in the kernel's writeback
  // cache (writable and not FOPEN_DIRECT_IO). While it is non-zero, SRC alone cannot
  // say where the file's data is (see op_lseek.cc).
  std::atomic<int> cached_writers{0};
  // Held around each buffered write to the backing file (op_write.cc). The backing
  // file system takes the inode lock exclusively for a buffered write anyway (ext4,
  // xfs, tmpfs); without this, the workers serving the kernel's parallel writeback
  // WRITEs of one file wait for that lock by spinning on its owner in the kernel
  // (rwsem_spin_on_owner: a quarter of the daemon's CPU under `dd bs=8k`), CPU the
  // copy itself needs on a small machine. A futex puts them to sleep instead.
  std::mutex buffered_write_mu;
  uint64_t nlookup = 0;  // guarded by InodeTable's lock
  // The last name the kernel learnt this inode by (guarded by InodeTable's lock):
  // lets the daemon tell the kernel to drop its cached dentry and inode.
  fuse_ino_t parent = 0;
  std::string name;

  // "/proc/self/fd/N": reopens the file with real access modes (O_PATH fds allow
  // neither read nor write) and serves calls that have no fd-based form.
  std::string ProcPath() const { return "/proc/self/fd/" + std::to_string(fd); }
};

class InodeTable : public HookCellIndex {
 public:
  static constexpr uint32_t kRootSlot = UINT32_MAX;

  // A fresh table: takes ownership of root_fd (O_PATH | O_DIRECTORY on SRC) and
  // records it in `state` (not owned; outlives the table).
  InodeTable(int root_fd, RestartState* state, HookRegistryImpl* hooks);
  // The table a previous worker left in `state`: the root fd and every live record.
  InodeTable(RestartState* state, HookRegistryImpl* hooks);
  ~InodeTable() override;

  Inode& Root() { return *root_; }
  Inode& Get(fuse_ino_t id) { return id == FUSE_ROOT_ID ? *root_ : *index_.Get(id - 2); }
  // nullptr for an id no record holds (a stale id after a crash mid-FORGET).
  Inode* Find(fuse_ino_t id) { return id == FUSE_ROOT_ID ? root_.get() : index_.Get(id - 2); }
  static fuse_ino_t IdOf(const Inode& in) { return in.slot == kRootSlot ? FUSE_ROOT_ID : fuse_ino_t(in.slot) + 2; }

  // Looks `name` up in `parent` and counts one kernel reference on the result.
  // Returns 0 and fills e (ino, attr), or a positive errno.
  int Lookup(Inode& parent, const char* name, fuse_entry_param* e);
  // Same, for an O_PATH fd the caller already opened as `name` in `parent`
  // (consumed: adopted or closed).
  int Adopt(int fd, Inode& parent, const char* name, fuse_entry_param* e);
  // Drops n kernel references; the inode is freed at zero.
  void Forget(fuse_ino_t id, uint64_t n);
  size_t Size();
  // The node id and last known (parent, name) of (dev, ino), if the kernel knows it.
  bool Known(dev_t dev, ino_t ino, fuse_ino_t* id, fuse_ino_t* parent, std::string* name);
  // Opens the backing file of (dev, ino) with `flags` if the kernel knows it; sets *id.
  // -1 otherwise (errno set).
  int OpenKnown(dev_t dev, ino_t ino, int flags, fuse_ino_t* id);

  void Locked(dev_t dev, ino_t ino, const std::function<void(HookCell* cell)>& fn) override;

  void set_timeout(double t) { timeout_ = t; }

 private:
  // Writes in's count, parent and name to its record (mu_ held).
  void Persist(const Inode& in);

  struct KeyHash {
    size_t operator()(const std::pair<dev_t, ino_t>& k) const { return k.second * 31 + k.first; }
  };
  std::unique_ptr<Inode> root_;
  RestartState* state_;
  HookRegistryImpl* hooks_;
  SlotIndex<Inode> index_;
  double timeout_ = 1.0;
  std::mutex mu_;
  std::unordered_map<std::pair<dev_t, ino_t>, std::unique_ptr<Inode>, KeyHash> map_;
};

}  // namespace migratefs::fs
