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
  RateProblem p;
  p.rounds = rounds;
  for (const SharedTask& t : in) {
    p.capacity_bps += t.net_bps;
    p.size_bytes.push_back(t.bytes_left);
    p.dirty_bps.push_back(t.dirty_bps);
  }
  auto a = AllocateRates(p);
  if (!a) return a.error();
  SectionAllocation out;
  out.pool_bps = p.capacity_bps;
  out.total_s = a.value().total_s;
  for (size_t j = 0; j < in.size(); ++j) out.rate_bps[SharedKey(in[j].host, in[j].vm)] = a.value().rates_bps[j];
  out.reason = internal::Format("seed 000 over %zu task(s), pool %.3f MB/s, objective %.1f s", in.size(),
                                internal::Mbs(out.pool_bps), out.total_s);
  return out;
}

}  // namespace migratefs::policy
