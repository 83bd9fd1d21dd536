#include "net/migration/token_bucket.h"

#include <algorithm>

namespace migratefs::migration {

namespace {
constexpr auto kBurst = std::chrono::milliseconds(100);
}

TokenBucket::TokenBucket(uint64_t rate) : rate_(rate), paid_until_(Clock::now()) {}

void TokenBucket::SetRate(uint64_t rate, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (rate != rate_ && rate_ != 0 && rate != 0 && paid_until_ > now) {
    // Rescale the outstanding debt to the new rate so a lowered limit bites at once
    // and a raised one frees waiting bookings sooner.
    auto debt = paid_until_ - now;
    paid_until_ = now + std::chrono::duration_cast<Clock::duration>(debt * (double(rate_) / double(rate)));
  }
  if (rate_ == 0 && rate != 0) paid_until_ = now;
  rate_ = rate;
}

uint64_t TokenBucket::rate() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rate_;
}

TokenBucket::Clock::duration TokenBucket::Reserve(uint64_t bytes, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (rate_ == 0) return Clock::duration::zero();
  // Unused credit is capped at the burst: an idle bucket does not bank a flood.
  paid_until_ = std::max(paid_until_, now - kBurst);
  paid_until_ += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(double(bytes) / double(rate_)));
  return paid_until_ > now ? paid_until_ - now : Clock::duration::zero();
}

}  // namespace migratefs::migration
