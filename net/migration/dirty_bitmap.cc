#include "net/migration/dirty_bitmap.h"

#include <algorithm>
#include <bit>

namespace migratefs::migration {

DirtyBitmap::DirtyBitmap(uint64_t blocks)
    : chunks_(new std::atomic<std::atomic<uint64_t>*>[kMaxChunks]) {
  for (uint64_t i = 0; i < kMaxChunks; i++) chunks_[i].store(nullptr, std::memory_order_relaxed);
  blocks_.store(std::min(blocks, kMaxBlocks), std::memory_order_release);
}

DirtyBitmap::~DirtyBitmap() {
  for (uint64_t i = 0; i < kMaxChunks; i++) delete[] chunks_[i].load(std::memory_order_relaxed);
}

std::atomic<uint64_t>* DirtyBitmap::WordFor(uint64_t block, bool create) {
  if (block >= kMaxBlocks) return nullptr;
  auto& slot = chunks_[block / kChunkBits];
  std::atomic<uint64_t>* chunk = slot.load(std::memory_order_acquire);
  if (chunk == nullptr) {
    if (!create) return nullptr;
    // Racing creators: one CAS wins, the others free their chunk and use the winner's.
    auto* fresh = new std::atomic<uint64_t>[kChunkWords];
    for (uint64_t i = 0; i < kChunkWords; i++) fresh[i].store(0, std::memory_order_relaxed);
    if (slot.compare_exchange_strong(chunk, fresh, std::memory_order_acq_rel)) {
      chunk = fresh;
    } else {
      delete[] fresh;
    }
  }
  return &chunk[(block % kChunkBits) / 64];
}

void DirtyBitmap::Resize(uint64_t blocks) {
  blocks = std::min(blocks, kMaxBlocks);
  uint64_t old = blocks_.exchange(blocks, std::memory_order_acq_rel);
  for (uint64_t b = blocks; b < old; b++) {
    if ((b % 64) == 0 && b + 64 <= old) {
      std::atomic<uint64_t>* w = WordFor(b, false);
      if (w) count_.fetch_sub(std::popcount(w->exchange(0)), std::memory_order_relaxed);
      b += 63;
      continue;
    }
    TestAndClear(b);
  }
}

bool DirtyBitmap::Set(uint64_t block) {
  if (block >= kMaxBlocks) return false;
  uint64_t cur = blocks_.load(std::memory_order_acquire);
  while (block >= cur && !blocks_.compare_exchange_weak(cur, block + 1, std::memory_order_acq_rel)) {
  }
  std::atomic<uint64_t>* w = WordFor(block, true);
  uint64_t mask = 1ull << (block % 64);
  if (w->fetch_or(mask, std::memory_order_acq_rel) & mask) return false;
  count_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

uint64_t DirtyBitmap::SetRange(uint64_t first, uint64_t count) {
  uint64_t changed = 0;
  uint64_t end = std::min(first + count, kMaxBlocks);
  if (end > first) {
    uint64_t cur = blocks_.load(std::memory_order_acquire);
    while (end > cur && !blocks_.compare_exchange_weak(cur, end, std::memory_order_acq_rel)) {
    }
  }
  for (uint64_t b = first; b < end;) {
    std::atomic<uint64_t>* w = WordFor(b, true);
    uint64_t bit = b % 64;
    uint64_t n = std::min<uint64_t>(64 - bit, end - b);
    uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << bit;
    uint64_t old = w->fetch_or(mask, std::memory_order_acq_rel);
    uint64_t added = std::popcount(mask & ~old);
    changed += added;
    b += n;
  }
  count_.fetch_add(changed, std::memory_order_relaxed);
  return changed;
}

bool DirtyBitmap::TestAndClear(uint64_t block) {
  std::atomic<uint64_t>* w = WordFor(block, false);
  if (w == nullptr) return false;
  uint64_t mask = 1ull << (block % 64);
  if (!(w->fetch_and(~mask, std::memory_order_acq_rel) & mask)) return false;
  count_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

bool DirtyBitmap::Test(uint64_t block) const {
  if (block >= kMaxBlocks) return false;
  std::atomic<uint64_t>* chunk = chunks_[block / kChunkBits].load(std::memory_order_acquire);
  if (chunk == nullptr) return false;
  return chunk[(block % kChunkBits) / 64].load(std::memory_order_acquire) & (1ull << (block % 64));
}

void DirtyBitmap::ClearAll() {
  for (uint64_t c = 0; c < kMaxChunks; c++) {
    std::atomic<uint64_t>* chunk = chunks_[c].load(std::memory_order_acquire);
    if (chunk == nullptr) continue;
    for (uint64_t i = 0; i < kChunkWords; i++) {
      uint64_t old = chunk[i].exchange(0, std::memory_order_acq_rel);
      if (old) count_.fetch_sub(std::popcount(old), std::memory_order_relaxed);
    }
  }
}

uint64_t DirtyBitmap::FindNextSet(uint64_t from) const {
  uint64_t end = size();
  while (from < end) {
    std::atomic<uint64_t>* chunk = chunks_[from / kChunkBits].load(std::memory_order_acquire);
    if (chunk == nullptr) {
      from = (from / kChunkBits + 1) * kChunkBits;
      continue;
    }
    uint64_t word = chunk[(from % kChunkBits) / 64].load(std::memory_order_acquire);
    word &= ~0ull << (from % 64);
    if (word) {
      uint64_t b = (from & ~63ull) + std::countr_zero(word);
      return b < end ? b : end;
    }
    from = (from & ~63ull) + 64;
  }
  return end;
}

}  // namespace migratefs::migration
