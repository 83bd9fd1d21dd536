// Waiting times over a sliding window (the last 10 s by default), for the p50/p99 that
// progress reports show (postcopy fetches on both daemons). Not thread-safe: the owner
// locks.
#pragma once

#include <algorithm>
#include <chrono>
#include <deque>
#include <utility>
#include <vector>

namespace migratefs::net {

class LatencyWindow {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LatencyWindow(Clock::duration span = std::chrono::seconds(10)) : span_(span) {}

  void Add(Clock::time_point now, Clock::duration waited) {
    samples_.emplace_back(now, std::chrono::duration<double, std::milli>(waited).count());
    while (!samples_.empty() && now - samples_.front().first > span_) samples_.pop_front();
  }

  // The q-quantile (0..1) in ms of the samples within the span before `now`; 0 if none.
  double Quantile(Clock::time_point now, double q) const {
    std::vector<double> v;
    for (const auto& [when, ms] : samples_)
      if (now - when <= span_) v.push_back(ms);
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const size_t i = size_t(q * double(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
  }

 private:
  Clock::duration span_;
  std::deque<std::pair<Clock::time_point, double>> samples_;
};

}  // namespace migratefs::net
