// A recurring condition (a refused handshake, a failed accept) is logged at once, then
// at most every `every`, with how often it happened meanwhile: a flood of hostile peers
// must not become a flood of log lines. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

namespace migratefs::net {

class LogThrottle {
 public:
  explicit LogThrottle(std::chrono::steady_clock::duration every = std::chrono::seconds(10)) : every_(every) {}

  // Counts one occurrence; returns how many to report when a line is due, else 0.
  uint64_t Note() {
    std::lock_guard<std::mutex> lock(mu_);
    ++count_;
    const auto now = std::chrono::steady_clock::now();
    if (logged_ && now - last_ < every_) return 0;
    logged_ = true;
    last_ = now;
    const uint64_t n = count_;
    count_ = 0;
    return n;
  }

 private:
  const std::chrono::steady_clock::duration every_;
  std::mutex mu_;
  bool logged_ = false;
  std::chrono::steady_clock::time_point last_;
  uint64_t count_ = 0;
};

}  // namespace migratefs::net
