#include "broker/policy/shared_allocation.h"

#include <algorithm>
#include <cmath>

#include "broker/policy/format.h"
#include "broker/policy/rate_allocation.h"

namespace migratefs::policy {

std::string SharedKey(const std::string& host, const std::string& vm) { return host + "/" + vm; }

Result<SectionAllocation> AllocateSection(const std::vector<SharedTask>& tasks, int rounds) {
  std::vector<SharedTask> in;
  for (const SharedTask& t : tasks) {
    if (!(t.bytes_left >= 0) || !(t.dirty_bps >= 0) || !(t.net_bps >= 0) || !std::isfinite(t.bytes_left) ||
        !std::isfinite(t.dirty_bps) || !std::isfinite(t.net_bps)) {
      return MakeError(errc::kInvalidArgument, "task " + SharedKey(t.host, t.vm) + ": negative or non-finite value");
    }
    if (!t.in_danger) in.push_back(t);
  }
  if (in.size() < 2) {
    return MakeError(errc::kInvalidArgument, "fewer than two tasks to share the section (not in danger)");
  }
  std::sort(in.begin(), in.end(), [](const SharedTask& a, const SharedTask& b) {
    return a.host != b.host ? a.host < b.host : a.vm < b.vm;
  });
  for (const SharedTask& t : in)
    if (!(t.ceiling_bps >= 0)) return MakeError(errc::kInvalidArgument, "task " + SharedKey(t.host, t.vm) + ": ceiling_bps is negative");
  double pool = 0;
  for (const SharedTask& t : in) pool += t.net_bps;
  // Ceilings: the objective is a sum of one term per task, each falling in its own
  // rate, so the capped optimum is r_j = min(ceiling_j, the rate at the common
  // multiplier). Solving without the caps, fixing every task above its ceiling at it
  // and re-solving the others with what is left reaches it: each re-solve has more
  // per task, so a fixed task never wants less again (README choice 12).
  std::vector<double> rate(in.size(), 0);
  std::vector<bool> capped(in.size(), false);
  size_t ncapped = 0;
  for (;;) {
    RateProblem p;
    p.rounds = rounds;
    p.capacity_bps = pool;
    std::vector<size_t> free;
    for (size_t j = 0; j < in.size(); ++j) {
      if (capped[j]) {
        p.capacity_bps -= in[j].ceiling_bps;
        continue;
      }
      free.push_back(j);
      p.size_bytes.push_back(in[j].bytes_left);
      p.dirty_bps.push_back(in[j].dirty_bps);
    }
    if (free.empty()) break;  // every task at its ceiling: the rest of the pool is unused
    auto a = AllocateRates(p);
    if (!a) return a.error();
    bool more = false;
    for (size_t k = 0; k < free.size(); ++k) {
      const size_t j = free[k];
      rate[j] = a.value().rates_bps[k];
      if (rate[j] > in[j].ceiling_bps) {
        rate[j] = in[j].ceiling_bps;
        capped[j] = more = true;
        ncapped++;
      }
    }
    if (!more) break;
  }
  SectionAllocation out;
  out.pool_bps = pool;
  for (size_t j = 0; j < in.size(); ++j) {
    out.rate_bps[SharedKey(in[j].host, in[j].vm)] = rate[j];
    if (rate[j] > 0) {
      const MigrationTimes t = RoundTimes(in[j].bytes_left, in[j].dirty_bps, rate[j], rounds);
      out.total_s += t.precopy_s + t.downtime_s;
    }
  }
  out.reason = internal::Format("seed 000 over %zu task(s), pool %.3f MB/s, %zu at their class ceiling, objective %.1f s",
                                in.size(), internal::Mbs(out.pool_bps), ncapped, out.total_s);
  return out;
}

}  // namespace migratefs::policy
