// One bit per block of a migrating image: set = the target's copy of that block may
// be stale. Lock-free and growable.
//
// Concurrency contract (DESIGN.md phase 2): the VM-side writer calls Set() *after* its
// pwrite returned; the sender calls TestAndClear() *before* it reads the block. With
// that order an update is never lost, at worst sent twice.
//
// Growth never moves words: bits live in fixed-size chunks reached through a fixed
// top-level table, so readers and writers never race with a reallocation.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace migratefs::migration {

class DirtyBitmap {
 public:
  // Capacity: kMaxChunks * kChunkBits blocks (2^32 blocks: 2 PiB at 512 KiB blocks).
  static constexpr uint64_t kChunkWords = 4096;
  static constexpr uint64_t kChunkBits = kChunkWords * 64;
  static constexpr uint64_t kMaxChunks = (1ull << 32) / kChunkBits;
  static constexpr uint64_t kMaxBlocks = kMaxChunks * kChunkBits;

  explicit DirtyBitmap(uint64_t blocks = 0);
  ~DirtyBitmap();
  DirtyBitmap(const DirtyBitmap&) = delete;
  DirtyBitmap& operator=(const DirtyBitmap&) = delete;

  // Number of blocks tracked. Set() past it grows the bitmap (the file grew).
  uint64_t size() const { return blocks_.load(std::memory_order_acquire); }

  // Grows or shrinks to `blocks`. Shrinking clears the bits past the new end.
  void Resize(uint64_t blocks);

  // Returns true if the bit was clear (the block became dirty now).
  bool Set(uint64_t block);
  // Sets [first, first+count); returns how many bits changed from clear to set.
  uint64_t SetRange(uint64_t first, uint64_t count);
  // Returns true if the bit was set; it is clear afterwards.
  bool TestAndClear(uint64_t block);
  bool Test(uint64_t block) const;
  void ClearAll();

  // First set bit at or after `from`, or size() if none.
  uint64_t FindNextSet(uint64_t from) const;

  // Set bits right now (exact when quiescent; a moment's snapshot otherwise).
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t>* WordFor(uint64_t block, bool create);

  std::unique_ptr<std::atomic<std::atomic<uint64_t>*>[]> chunks_;
  std::atomic<uint64_t> blocks_{0};
  std::atomic<uint64_t> count_{0};
};

}  // namespace migratefs::migration
