#include "net/migration/delayed_completer.h"

namespace migratefs::migration {

DelayedCompleter::DelayedCompleter() : thread_([this] { Run(); }) {}

DelayedCompleter::~DelayedCompleter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void DelayedCompleter::CompleteAt(Clock::time_point when, Completion done, int err) {
  if (when <= Clock::now()) {
    done.Complete(err);
    return;
  }
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) {
      wake = false;
    } else {
      wake = queue_.empty() || when < queue_.top().when;
      queue_.push(Entry{when, seq_++, done, err});
      done = Completion();
    }
  }
  if (done.pending()) done.Complete(err);  // shutting down: never strand a reply
  if (wake) cv_.notify_one();
}

void DelayedCompleter::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (queue_.empty()) {
      if (stop_) return;
      cv_.wait(lock);
      continue;
    }
    Entry top = queue_.top();
    if (!stop_ && top.when > Clock::now()) {
      cv_.wait_until(lock, top.when);
      continue;
    }
    queue_.pop();
    lock.unlock();
    top.done.Complete(top.err);
    lock.lock();
  }
}

}  // namespace migratefs::migration
