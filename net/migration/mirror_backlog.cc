#include "net/migration/mirror_backlog.h"

namespace migratefs::migration {

Status ValidateMirrorMode(const MirrorMode& m) {
  if (m.backlog_max_bytes == 0) return MakeError(errc::kInvalidArgument, "backlog_max_bytes must be > 0");
  if (m.backlog_high_pct == 0 || m.backlog_high_pct > 100)
    return MakeError(errc::kInvalidArgument, "backlog_high_pct must be 1..100");
  if (m.backlog_low_pct >= m.backlog_high_pct)
    return MakeError(errc::kInvalidArgument, "backlog_low_pct must be below backlog_high_pct");
  return OkStatus();
}

void MirrorBacklog::Configure(const MirrorMode& m, Clock::time_point now) {
  std::lock_guard<std::mutex> lk(mu_);
  if (m.async && !mode_.async) {
    throttled_total_ = {};
    throttled_ = false;
  }
  if (!m.async) SetThrottledLocked(false, now);
  mode_ = m;
}

MirrorMode MirrorBacklog::mode() const {
  std::lock_guard<std::mutex> lk(mu_);
  return mode_;
}

void MirrorBacklog::SetThrottledLocked(bool on, Clock::time_point now) {
  if (on == throttled_) return;
  if (on) {
    throttled_since_ = now;
  } else {
    throttled_total_ += now - throttled_since_;
  }
  throttled_ = on;
  switches_++;
  switch_pending_ = true;
}

bool MirrorBacklog::Admit(uint64_t len, Clock::time_point now) {
  std::lock_guard<std::mutex> lk(mu_);
  outstanding_ += len;
  if (!mode_.async) return true;
  if (!throttled_ && outstanding_ > HighLocked()) SetThrottledLocked(true, now);
  return throttled_;
}

void MirrorBacklog::Settled(uint64_t len, Clock::time_point now) {
  std::lock_guard<std::mutex> lk(mu_);
  outstanding_ -= len <= outstanding_ ? len : outstanding_;
  if (throttled_ && outstanding_ < LowLocked()) SetThrottledLocked(false, now);
}

MirrorBacklog::Snapshot MirrorBacklog::Snap(Clock::time_point now) const {
  std::lock_guard<std::mutex> lk(mu_);
  Snapshot s;
  s.mode = !mode_.async ? "sync" : throttled_ ? "async-throttled" : "async";
  s.backlog_bytes = outstanding_;
  s.backlog_max_bytes = mode_.async ? mode_.backlog_max_bytes : 0;
  auto total = throttled_total_ + (throttled_ ? now - throttled_since_ : Clock::duration{});
  s.synchronous_s = std::chrono::duration<double>(total).count();
  s.switches = switches_;
  return s;
}

bool MirrorBacklog::TakeSwitch(bool* throttled_now) {
  std::lock_guard<std::mutex> lk(mu_);
  *throttled_now = throttled_;
  const bool had = switch_pending_;
  switch_pending_ = false;
  return had;
}

}  // namespace migratefs::migration
