#include "fs/hook_registry.h"

#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <thread>
#include <vector>

namespace migratefs::fs {

struct ModifyScope::Slot {
  // Odd while this thread is inside a scope; only the owning thread writes it.
  alignas(64) std::atomic<uint64_t> seq{0};
  std::atomic<const HookCell*> cell{nullptr};
};

namespace {

bool RegisterMembarrier() {
  long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return false;
  return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

// Registered at load time, before any worker thread exists.
const bool g_membarrier = RegisterMembarrier();

// Slots are never freed (a deque keeps their addresses stable), so a waiter can read
// a snapshot of them without holding the lock; a thread that exits returns its slot
// for reuse.
std::mutex g_slots_mu;
std::deque<ModifyScope::Slot>& AllSlots() {
  static auto* slots = new std::deque<ModifyScope::Slot>();
  return *slots;
}
std::vector<ModifyScope::Slot*>& FreeSlots() {
  static auto* free = new std::vector<ModifyScope::Slot*>();
  return *free;
}

}  // namespace

// Friend-free access: the holder lives in this file only.
struct SlotHolder {
  ModifyScope::Slot* slot = nullptr;
  ModifyScope::Slot* Get() {
    if (slot == nullptr) {
      std::lock_guard<std::mutex> l(g_slots_mu);
      if (!FreeSlots().empty()) {
        slot = FreeSlots().back();
        FreeSlots().pop_back();
      } else {
        slot = &AllSlots().emplace_back();
      }
    }
    return slot;
  }
  ~SlotHolder() {
    if (slot == nullptr) return;
    std::lock_guard<std::mutex> l(g_slots_mu);
    FreeSlots().push_back(slot);
  }
};

namespace {
thread_local SlotHolder t_slot;
}  // namespace

ModifyScope::ModifyScope(const HookCell& cell) : slot_(t_slot.Get()) {
  uint64_t seq = slot_->seq.load(std::memory_order_relaxed) + 1;
  slot_->cell.store(&cell, std::memory_order_relaxed);
  slot_->seq.store(seq, std::memory_order_release);
  if (g_membarrier) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  hook_ = cell.load(std::memory_order_acquire);
}

void ModifyScope::Exit() {
  if (slot_ == nullptr) return;
  slot_->seq.store(slot_->seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  slot_ = nullptr;
  hook_ = nullptr;
}

ModifyScope::~ModifyScope() { Exit(); }

void HookRegistryImpl::WaitForModifiers(const HookCell* cell) {
  if (g_membarrier) {
    // Registration is per address space and survives fork (fuse_daemonize); register
    // again if the kernel says otherwise rather than skip the barrier.
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
      syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0);
      if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) abort();
    }
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  std::vector<ModifyScope::Slot*> slots;
  {
    std::lock_guard<std::mutex> l(g_slots_mu);
    for (auto& s : AllSlots()) slots.push_back(&s);
  }
  for (ModifyScope::Slot* s : slots) {
    uint64_t seq = s->seq.load(std::memory_order_acquire);
    if ((seq & 1) == 0) continue;
    // A different cell here means the scope `seq` already ended (the owner writes
    // the cell of its next scope only after leaving this one).
    if (s->cell.load(std::memory_order_acquire) != cell) continue;
    auto delay = std::chrono::microseconds(5);
    while (s->seq.load(std::memory_order_acquire) == seq) {
      std::this_thread::sleep_for(delay);
      if (delay < std::chrono::milliseconds(1)) delay *= 2;
    }
  }
}

HookRegistryImpl::HookRegistryImpl() = default;
HookRegistryImpl::~HookRegistryImpl() = default;

bool HookRegistryImpl::Replace(dev_t dev, ino_t ino, std::shared_ptr<ImageHook> hook, const ImageHook* only_if) {
  std::lock_guard<std::mutex> serial(attach_mu_);
  std::shared_ptr<ImageHook> old;
  const HookCell* live = nullptr;
  bool changed = false;
  auto update = [&](HookCell* cell) {
    std::lock_guard<std::mutex> l(mu_);
    auto key = std::make_pair(dev, ino);
    auto it = hooks_.find(key);
    if (only_if != nullptr && (it == hooks_.end() || it->second.get() != only_if)) return;
    changed = true;
    if (it != hooks_.end()) {
      old = std::move(it->second);
      hooks_.erase(it);
    }
    if (hook) hooks_.emplace(key, hook);
    count_.store(hooks_.size(), std::memory_order_relaxed);
    if (cell != nullptr) {
      cell->store(hook.get(), std::memory_order_seq_cst);
      live = cell;
    }
  };
  {
    std::unique_lock<std::shared_mutex> ns(ns_mu_);
    if (index_ != nullptr) {
      index_->Locked(dev, ino, update);
    } else {
      update(nullptr);
    }
  }
  if (!changed) return false;
  // Only a file that is in the inode table can be open, hence being modified.
  if (live != nullptr) WaitForModifiers(live);
  if (on_change_) on_change_(dev, ino);
  return true;
  // `old` dies here, after every call into it has returned.
}

void HookRegistryImpl::Attach(dev_t dev, ino_t ino, std::shared_ptr<ImageHook> hook) {
  Replace(dev, ino, std::move(hook));
}

bool HookRegistryImpl::Detach(dev_t dev, ino_t ino, const ImageHook* hook) {
  if (hook == nullptr) return false;
  return Replace(dev, ino, nullptr, hook);
}

std::shared_ptr<ImageHook> HookRegistryImpl::Find(dev_t dev, ino_t ino) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = hooks_.find(std::make_pair(dev, ino));
  return it == hooks_.end() ? nullptr : it->second;
}

int HookRegistryImpl::NamespaceChange::Check(dev_t dev, ino_t ino) {
  if (r_.Empty()) return 0;
  std::shared_ptr<ImageHook> hook = r_.Find(dev, ino);
  return hook ? hook->CheckNamespaceChange() : 0;
}

ImageHook* HookRegistryImpl::InitialHook(dev_t dev, ino_t ino) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = hooks_.find(std::make_pair(dev, ino));
  return it == hooks_.end() ? nullptr : it->second.get();
}

}  // namespace migratefs::fs
