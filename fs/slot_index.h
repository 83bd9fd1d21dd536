// Slot number → in-memory object, read without a lock on every request (the kernel
// only sends ids it was given, so a slot is always set before anyone reads it).
// Chunks are allocated on first use and never freed or moved.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

namespace migratefs::fs {

template <typename T>
class SlotIndex {
 public:
  static constexpr uint32_t kChunkBits = 16;
  static constexpr uint32_t kChunkSize = 1u << kChunkBits;
  static constexpr uint32_t kMaxChunks = 1024;  // 64 M slots

  SlotIndex() = default;
  ~SlotIndex() {
    for (auto& c : chunks_) delete[] c.load();
  }
  SlotIndex(const SlotIndex&) = delete;
  SlotIndex& operator=(const SlotIndex&) = delete;

  T* Get(uint64_t slot) const {
    if (slot >= uint64_t(kChunkSize) * kMaxChunks) return nullptr;
    std::atomic<T*>* c = chunks_[slot >> kChunkBits].load(std::memory_order_acquire);
    return c == nullptr ? nullptr : c[slot & (kChunkSize - 1)].load(std::memory_order_acquire);
  }
  void Set(uint32_t slot, T* obj) {
    std::atomic<T*>* c = chunks_[slot >> kChunkBits].load(std::memory_order_acquire);
    if (c == nullptr) {
      std::lock_guard<std::mutex> l(grow_mu_);
      c = chunks_[slot >> kChunkBits].load();
      if (c == nullptr) {
        c = new std::atomic<T*>[kChunkSize]();
        chunks_[slot >> kChunkBits].store(c, std::memory_order_release);
      }
    }
    c[slot & (kChunkSize - 1)].store(obj, std::memory_order_release);
  }

 private:
  std::atomic<std::atomic<T*>*> chunks_[kMaxChunks] = {};
  std::mutex grow_mu_;
};

}  // namespace migratefs::fs
