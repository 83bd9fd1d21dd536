// Wakes a migration's idle sender threads when there is something for them to send.
//
// Why: a sender that found no dirty block used to sleep 2 ms and scan again. With the
// default eight senders that is ~4000 wake-ups a second per migration doing nothing:
// all of phase 3 under a synchronous mirror (the bitmap stays empty), and a whole
// bitmap scan each time (256 KiB of words for a 1 TiB image). On a host that runs the
// VM as well, those wake-ups take the cores the VM's I/O and the mirror need.
//
// Who rings: whoever makes work a sender must see, after making it visible (a bit
// set in a dirty bitmap, a fetched block queued, a hand-over over, post-copy begun,
// deferred blocks released): Ring() wakes one waiting sender, RingAll() every one
// (stopping). A sender that claimed work rings once more, so a burst of work wakes
// the idle senders one after another instead of all of them for every block.
//
// Who waits: a sender, with the generation it read *before* it looked for work:
//     const uint64_t seen = bell.generation();
//     if (!ClaimSomething()) bell.WaitPast(seen, kBackstop);
// A ring between the read and the wait is never lost: the wait returns at once. The
// timeout is a backstop for a change nobody rings for; missing one costs latency only.
//
// The same bell serves any "sleep until this changes or a deadline passes": the
// network limit's wait in PayNetwork is one (rung when the limit changes).
//
// Cost of a ring nobody waits for: one atomic add and one atomic load (a VM write in
// phases 1-2 that dirties a fresh block pays it).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace migratefs::migration {

class WorkBell {
 public:
  uint64_t generation() const { return generation_.load(); }

  void Ring() { RingImpl(false); }
  void RingAll() { RingImpl(true); }

  // Blocks until the generation differs from `seen` (a ring since it was read) or
  // `timeout` passes. Returns true if rung.
  bool WaitPast(uint64_t seen, std::chrono::nanoseconds timeout);

  // Threads asleep in WaitPast right now (for tests).
  int waiting() const { return waiters_.load(); }

 private:
  void RingImpl(bool all);

  // Both sides use sequentially consistent operations on generation_ and waiters_:
  // a ringer that misses a waiter's increment is seen by that waiter's check.
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> waiters_{0};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace migratefs::migration
