// A small cache of equally sized payload buffers (typically one block), so that a
// stream of 512 KiB frames does not page-fault fresh memory for every frame.
// Every buffer is 4 KiB-aligned and its length rounded up to 4 KiB, so the same
// buffer can be filled by an O_DIRECT read on the source and written with O_DIRECT on
// the target without a bounce copy. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

namespace migratefs::net {

inline constexpr size_t kPayloadAlignment = 4096;

struct AlignedFree {
  void operator()(uint8_t* p) const { std::free(p); }
};
// A payload buffer: kPayloadAlignment-aligned, owned.
using PayloadBuffer = std::unique_ptr<uint8_t[], AlignedFree>;

class BufferPool {
 public:
  // Keeps at most max_cached_bytes in the cache.
  explicit BufferPool(size_t max_cached_bytes = 128u << 20) : max_cached_(max_cached_bytes) {}

  // Uninitialized aligned buffer of at least len bytes.
  PayloadBuffer Get(size_t len) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (len == size_ && !free_.empty()) {
        auto b = std::move(free_.back());
        free_.pop_back();
        return b;
      }
    }
    const size_t rounded = (len + kPayloadAlignment - 1) & ~(kPayloadAlignment - 1);
    void* p = std::aligned_alloc(kPayloadAlignment, rounded ? rounded : kPayloadAlignment);
    if (!p) throw std::bad_alloc();
    return PayloadBuffer(static_cast<uint8_t*>(p));
  }

  // Returns a buffer obtained from Get(len). The cache follows the most recent size.
  void Put(PayloadBuffer b, size_t len) {
    if (!b || len < (64u << 10)) return;  // small buffers: malloc is fine
    std::lock_guard<std::mutex> lk(mu_);
    if (len != size_) {
      free_.clear();
      size_ = len;
    }
    if ((free_.size() + 1) * len <= max_cached_) free_.push_back(std::move(b));
  }

 private:
  const size_t max_cached_;
  std::mutex mu_;
  size_t size_ = 0;
  std::vector<PayloadBuffer> free_;
};

}  // namespace migratefs::net
