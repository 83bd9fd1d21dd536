// A small cache of equally sized payload buffers (typically one block), so that a
// stream of 512 KiB frames does not page-fault fresh memory for every frame.
// Thread-safe. Buffers of other sizes are plain new[]/delete[].
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace migratefs::net {

class BufferPool {
 public:
  // Keeps at most max_cached_bytes in the cache.
  explicit BufferPool(size_t max_cached_bytes = 128u << 20) : max_cached_(max_cached_bytes) {}

  // Uninitialized buffer of at least len bytes.
  std::unique_ptr<uint8_t[]> Get(size_t len) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (len == size_ && !free_.empty()) {
        auto b = std::move(free_.back());
        free_.pop_back();
        return b;
      }
    }
    return std::unique_ptr<uint8_t[]>(new uint8_t[len]);
  }

  // Returns a buffer obtained from Get(len). The cache follows the most recent size.
  void Put(std::unique_ptr<uint8_t[]> b, size_t len) {
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
  std::vector<std::unique_ptr<uint8_t[]>> free_;
};

}  // namespace migratefs::net
