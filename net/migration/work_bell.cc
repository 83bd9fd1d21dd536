#include "net/migration/work_bell.h"

namespace migratefs::migration {

void WorkBell::RingImpl(bool all) {
  generation_.fetch_add(1);
  if (waiters_.load() == 0) return;
  // Under the lock: a sender between its check and its sleep holds it, so the
  // notification cannot fall between the two.
  std::lock_guard<std::mutex> lock(mu_);
  if (all) cv_.notify_all();
  else cv_.notify_one();
}

bool WorkBell::WaitPast(uint64_t seen, std::chrono::nanoseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  waiters_.fetch_add(1);
  const bool rung = cv_.wait_for(lock, timeout, [&] { return generation_.load() != seen; });
  waiters_.fetch_sub(1);
  return rung;
}

}  // namespace migratefs::migration
