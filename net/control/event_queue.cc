#include "net/control/event_queue.h"

#include <utility>

namespace migratefs::control {

bool EventQueue::Push(std::string line) {
  std::lock_guard<std::mutex> lock(mu_);
  if (overflowed_) return false;
  if (count_ >= capacity_) {
    overflowed_ = true;
    lines_.clear();
    lines_.shrink_to_fit();
    count_ = 0;
  } else {
    lines_ += line;
    ++count_;
  }
  bool wake = !wake_pending_;
  wake_pending_ = true;
  return wake || overflowed_;
}

EventQueue::Batch EventQueue::Take() {
  std::lock_guard<std::mutex> lock(mu_);
  Batch batch{std::move(lines_), overflowed_};
  lines_.clear();
  count_ = 0;
  wake_pending_ = false;
  return batch;
}

bool EventQueue::overflowed() {
  std::lock_guard<std::mutex> lock(mu_);
  return overflowed_;
}

}  // namespace migratefs::control
