// A token bucket for byte rates, used for both throttles: the network limit (the
// sender waits before each block) and the disk limit (the VM's write is acknowledged
// late). Thread-safe. Time is passed in, so tests drive it without sleeping.
//
// Reserve() never refuses: it books the bytes and says how long the caller must wait
// before acting, so concurrent callers queue up fairly in booking order and the
// long-run rate equals the limit. The burst is kept small (100 ms of the rate, at
// least one maximum request) so any 1 s window stays within a few percent of the limit.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

namespace migratefs::migration {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  // rate_bytes_per_s = 0: unlimited.
  explicit TokenBucket(uint64_t rate_bytes_per_s = 0);

  // Takes effect for every later Reserve(); bookings already made keep their times
  // only up to the new rate's schedule (a lowered limit applies within one burst).
  void SetRate(uint64_t rate_bytes_per_s, Clock::time_point now = Clock::now());
  uint64_t rate() const;

  // Books `bytes`; returns how long to wait from `now` (zero if unlimited or in budget).
  Clock::duration Reserve(uint64_t bytes, Clock::time_point now = Clock::now());

 private:
  mutable std::mutex mu_;
  uint64_t rate_;
  // The moment the bucket is "paid up to": bookings push it forward by bytes/rate.
  Clock::time_point paid_until_;
};

}  // namespace migratefs::migration
