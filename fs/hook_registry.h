// HookRegistry implementation and the write-path guard that calls into hooks.
//
// The data path must stay cheap when no hook is attached (the common case) and must
// never take a global lock. Each backing file's Inode carries a HookCell: an atomic
// raw pointer to its hook (or null). A modification publishes "this thread is
// modifying <cell>" in a thread-private slot and then loads the cell; Attach/Detach
// store the cell and then wait until no thread is still inside a modification that
// may have loaded the old value.
//
// The handshake is a Dekker pattern made asymmetric with membarrier(2): the writer
// side issues only a compiler fence between its slot store and its cell load, and
// the (rare) Attach side pays for the real barrier with
// MEMBARRIER_CMD_PRIVATE_EXPEDITED, which forces a full memory barrier on every
// thread of the process. After that barrier, each writer either has its slot store
// visible to the attacher (so the attacher waits for it) or performs its cell load
// after the barrier (so it sees the new hook). Without membarrier (old kernels) the
// writer falls back to a seq_cst fence.
//
// Cost per modification with no hook: two stores to a cache line only this thread
// writes, one load of the cell, one store on exit. No RMW, no shared-line write.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <utility>

#include "migratefs/image_hook.h"

namespace migratefs::fs {

using HookCell = std::atomic<ImageHook*>;

// Where the registry finds the live cell of a (dev, ino). Implemented by the inode
// table; Locked() must hold the table's lock while calling fn, and the table must
// call HookRegistryImpl::InitialHook() under that same lock when it creates a cell.
class HookCellIndex {
 public:
  virtual ~HookCellIndex() = default;
  virtual void Locked(dev_t dev, ino_t ino, const std::function<void(HookCell* cell)>& fn) = 0;
};

class HookRegistryImpl : public HookRegistry {
 public:
  HookRegistryImpl();
  ~HookRegistryImpl() override;

  // Set once, before requests are served. May stay null (unit tests).
  void SetIndex(HookCellIndex* index) { index_ = index; }
  // Called after every Attach/Detach, outside all locks (see Fs::DropKernelCache).
  void SetChangeListener(std::function<void(dev_t, ino_t)> fn) { on_change_ = std::move(fn); }
  // What RefreshKernelSize does (Fs::StoreKernelSize). May stay null.
  void SetSizeRefresher(std::function<void(dev_t, ino_t)> fn) { refresh_size_ = std::move(fn); }
  void RefreshKernelSize(dev_t dev, ino_t ino) override {
    if (refresh_size_) refresh_size_(dev, ino);
  }

  void Attach(dev_t dev, ino_t ino, std::shared_ptr<ImageHook> hook) override;
  bool Detach(dev_t dev, ino_t ino, const ImageHook* hook) override;
  std::shared_ptr<ImageHook> Find(dev_t dev, ino_t ino) const override;

  // For the inode table, under its lock, when it creates the cell of (dev, ino).
  ImageHook* InitialHook(dev_t dev, ino_t ino) const;

  // True if any hook is attached; lets namespace ops skip a stat when none is.
  bool Empty() const { return count_.load(std::memory_order_relaxed) == 0; }

  // Holds off Attach/Detach while an unlink/rename asks the hooks of its victims
  // and then changes the namespace, so a file cannot be attached between the check
  // and the change. Many namespace changes run concurrently.
  class NamespaceChange {
   public:
    explicit NamespaceChange(HookRegistryImpl& r) : r_(r), lock_(r.ns_mu_) {}
    // 0, or the errno the hook of (dev, ino) vetoes the change with.
    int Check(dev_t dev, ino_t ino);
    bool AnyHooks() const { return !r_.Empty(); }

   private:
    HookRegistryImpl& r_;
    std::shared_lock<std::shared_mutex> lock_;
  };

  // Blocks until no thread is inside a ModifyScope on `cell` that began before the
  // call. Public for tests.
  static void WaitForModifiers(const HookCell* cell);

 private:
  // Installs `hook` (null: none) on (dev, ino). With `only_if` set, does nothing unless
  // the hook attached now is `only_if`. Returns whether it changed anything.
  bool Replace(dev_t dev, ino_t ino, std::shared_ptr<ImageHook> hook, const ImageHook* only_if = nullptr);

  HookCellIndex* index_ = nullptr;
  std::function<void(dev_t, ino_t)> on_change_;
  std::function<void(dev_t, ino_t)> refresh_size_;
  std::mutex attach_mu_;  // serialises Attach/Detach (they wait; Find does not)
  std::shared_mutex ns_mu_;  // exclusive in Attach/Detach, shared in NamespaceChange
  mutable std::mutex mu_;
  std::map<std::pair<dev_t, ino_t>, std::shared_ptr<ImageHook>> hooks_;
  std::atomic<size_t> count_{0};
};

// Brackets one modification (write, truncate, fallocate, copy, O_TRUNC open) of a
// file. hook() is the hook to call, valid until the scope ends; Detach waits for it.
// Scopes do not nest: one per thread at a time. Attach/Detach must not be called
// from inside a hook call or a FUSE request handler: they wait for modifications in
// flight and send the kernel cache invalidations, either of which can wait for the
// calling thread.
class ModifyScope {
 public:
  explicit ModifyScope(const HookCell& cell);
  ~ModifyScope();
  ModifyScope(const ModifyScope&) = delete;
  ModifyScope& operator=(const ModifyScope&) = delete;

  ImageHook* hook() const { return hook_; }
  // Ends the scope early (before replying, so Attach waits less).
  void Exit();

  struct Slot;  // per-thread; defined in hook_registry.cc

 private:
  Slot* slot_;
  ImageHook* hook_;
};

}  // namespace migratefs::fs
