// Completes FUSE replies at a later moment, from one timer thread. This is how the disk
// limit slows the VM: its write is already on disk, only the acknowledgement waits
// (research/fuse-perf.md: never sleep in a FUSE worker thread — ten sleeping workers
// would stall every other request on the mount).
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

#include "migratefs/image_hook.h"

namespace migratefs::migration {

class DelayedCompleter {
 public:
  using Clock = std::chrono::steady_clock;
  DelayedCompleter();
  ~DelayedCompleter();  // completes everything still queued, at once
  DelayedCompleter(const DelayedCompleter&) = delete;
  DelayedCompleter& operator=(const DelayedCompleter&) = delete;

  // Calls done.Complete(err) at `when` (at once if `when` has passed).
  void CompleteAt(Clock::time_point when, Completion done, int err = 0);

 private:
  struct Entry {
    Clock::time_point when;
    uint64_t seq;  // FIFO among equal deadlines
    Completion done;
    int err;
    bool operator>(const Entry& o) const { return when != o.when ? when > o.when : seq > o.seq; }
  };
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue_;
  uint64_t seq_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace migratefs::migration
