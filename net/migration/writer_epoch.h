// Lets a control thread flip a flag that hook calls read, and then know that no hook
// call still acts on the old value. Used for the phase 2 -> 3 switch ("turn mirroring
// on first, then drain": a write that still marked a bit instead of mirroring must be
// finished before the drain is trusted) and for the fence at finish.
//
//   hook call:  WriterEpoch::Guard g(epoch);  read flag;  act;      (g's scope)
//   control:    flag = new value;  epoch.WaitForOlderWriters();
//
// After WaitForOlderWriters() returns, every hook call that could have read the old
// flag value has left its scope. Hook calls never wait; the control thread spins with
// yields (hook calls are microseconds long).
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

namespace migratefs::migration {

class WriterEpoch {
 public:
  class Guard {
   public:
    explicit Guard(WriterEpoch& e) : e_(e) {
      for (;;) {
        slot_ = e_.epoch_.load() & 1;
        e_.active_[slot_].fetch_add(1);
        // Registered in the slot of the epoch current *after* our increment: any flip
        // that starts later waits for us.
        if ((e_.epoch_.load() & 1) == slot_) break;
        e_.active_[slot_].fetch_sub(1);
      }
    }
    ~Guard() { e_.active_[slot_].fetch_sub(1); }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    WriterEpoch& e_;
    uint64_t slot_;
  };

  void WaitForOlderWriters() {
    uint64_t old = epoch_.fetch_add(1);
    while (active_[old & 1].load() != 0) std::this_thread::yield();
  }

 private:
  std::atomic<uint64_t> epoch_{0};
  std::atomic<int64_t> active_[2] = {0, 0};
};

}  // namespace migratefs::migration
