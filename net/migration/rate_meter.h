// Moving-average rate of a byte counter: bytes added in the last `window`, divided by
// the window (20 slots of window/20 each). Thread-safe; time is passed in for tests.
// The control API reports these rates (window 2 s by default: long enough to smooth
// 512 KiB bursts, short enough that a broker period of 1 s sees changes).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>

namespace migratefs::migration {

class RateMeter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RateMeter(Clock::duration window = std::chrono::seconds(2));

  void Add(uint64_t bytes, Clock::time_point now = Clock::now());
  // Bytes per second over the window ending at `now`.
  double Rate(Clock::time_point now = Clock::now()) const;
  uint64_t total() const;

 private:
  static constexpr int kSlots = 20;
  void Advance(int64_t slot) const;

  mutable std::mutex mu_;
  Clock::duration slot_len_;
  Clock::time_point epoch_;
  mutable std::array<uint64_t, kSlots> slots_{};
  mutable int64_t head_ = 0;  // index (in slot_len_ units since epoch_) of the newest slot
  uint64_t total_ = 0;
};

}  // namespace migratefs::migration
