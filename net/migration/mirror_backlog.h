// Phase 3's choice, write by write, between a synchronous and an asynchronous mirror
// (issue 12; seed 001's bounded cache with its two thresholds).
//
// Synchronous (the default): the VM's write is acknowledged once the target applied
// it. Asynchronous: once it is on the source disk and queued for the peer; the queue
// (the peer connection's send queue, shipped in order) is the backlog. When the
// backlog would pass the high mark, writes wait for the peer again until it has
// drained below the low mark (hysteresis: one switch per crossing, never one per
// write). A write larger than the whole band waits when it would pass the high mark,
// so a single burst cannot overshoot it unboundedly.
//
// Who calls: ImageMigration::AfterWrite (Admit, before queueing), the ack callbacks
// (Settled, on the peer's I/O thread, success or failure), control requests
// (Configure). Thread-safe. Pure bookkeeping: no I/O, time comes from the caller.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "migratefs/migration_service.h"  // MirrorMode
#include "migratefs/status.h"

namespace migratefs::migration {

// invalid_argument naming the field, or OK: max > 0, low < high <= 100.
Status ValidateMirrorMode(const MirrorMode& m);

class MirrorBacklog {
 public:
  using Clock = std::chrono::steady_clock;

  // Switches mode (live). Going sync -> async starts unthrottled; async -> sync keeps
  // the bytes outstanding (they are still acknowledged by the peer).
  void Configure(const MirrorMode& m, Clock::time_point now);
  MirrorMode mode() const;

  // A mirrored write of `len` bytes is about to be queued. Returns true if the VM's
  // acknowledgement must wait for the peer's, false if it may be given now. Either
  // way the bytes count as outstanding until Settled(len).
  bool Admit(uint64_t len, Clock::time_point now);
  // The peer acknowledged (or failed: the caller re-marks the blocks) `len` bytes
  // admitted before.
  void Settled(uint64_t len, Clock::time_point now);

  struct Snapshot {
    std::string mode;               // "sync", "async", or "async-throttled" (waiting: over the high mark)
    uint64_t backlog_bytes = 0;     // admitted, not yet settled
    uint64_t backlog_max_bytes = 0;
    double synchronous_s = 0;       // time spent throttled since async was configured
    uint64_t switches = 0;          // throttled <-> unthrottled transitions so far
  };
  Snapshot Snap(Clock::time_point now) const;
  // Whether the last Admit/Settled changed the throttled state (for events); clears it.
  bool TakeSwitch(bool* throttled_now);

 private:
  uint64_t HighLocked() const { return mode_.backlog_max_bytes / 100 * mode_.backlog_high_pct; }
  uint64_t LowLocked() const { return mode_.backlog_max_bytes / 100 * mode_.backlog_low_pct; }
  void SetThrottledLocked(bool on, Clock::time_point now);

  mutable std::mutex mu_;
  MirrorMode mode_;
  uint64_t outstanding_ = 0;
  bool throttled_ = false;
  Clock::time_point throttled_since_{};
  Clock::duration throttled_total_{};
  uint64_t switches_ = 0;
  bool switch_pending_ = false;
};

}  // namespace migratefs::migration
