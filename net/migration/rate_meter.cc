#include "net/migration/rate_meter.h"

#include <algorithm>

namespace migratefs::migration {

RateMeter::RateMeter(Clock::duration window) : slot_len_(window / kSlots), epoch_(Clock::now()) {}

void RateMeter::Advance(int64_t slot) const {
  if (slot <= head_) return;
  // Zero the slots that were skipped over; they saw no bytes.
  for (int64_t s = std::max(head_ + 1, slot - kSlots + 1); s <= slot; s++) slots_[s % kSlots] = 0;
  head_ = slot;
}

void RateMeter::Add(uint64_t bytes, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t slot = std::max<int64_t>(0, (now - epoch_) / slot_len_);
  Advance(slot);
  slots_[std::min(slot, head_) % kSlots] += bytes;
  total_ += bytes;
}

double RateMeter::Rate(Clock::time_point now) const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t slot = std::max<int64_t>(0, (now - epoch_) / slot_len_);
  Advance(slot);
  // The newest slot is partly elapsed: count the full window minus its unelapsed part.
  uint64_t sum = 0;
  for (uint64_t v : slots_) sum += v;
  auto elapsed_in_head = (now - epoch_) - slot * slot_len_;
  double window_s = std::chrono::duration<double>(slot_len_ * (kSlots - 1) + elapsed_in_head).count();
  double since_start = std::chrono::duration<double>(now - epoch_).count();
  window_s = std::min(window_s, std::max(since_start, 1e-3));
  return window_s > 0 ? double(sum) / window_s : 0;
}

uint64_t RateMeter::total() const {
  std::lock_guard<std::mutex> lock(mu_);
  return total_;
}

}  // namespace migratefs::migration
