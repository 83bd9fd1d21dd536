#include "broker/policy/reservation.h"

#include <algorithm>
#include <cmath>

#include "broker/policy/fair_share.h"
#include "broker/policy/format.h"

namespace migratefs::policy {

using internal::Format;
using internal::Mbs;

namespace {
Error Bad(const char* field, const std::string& what) {
  return MakeError(errc::kInvalidArgument, std::string("field \"") + field + "\" " + what);
}
bool Finite(double v) { return std::isfinite(v); }
}  // namespace

Status ValidateReservation(const LinkReservation& r) {
  if (!Finite(r.capacity_bps) || r.capacity_bps <= 0) return Bad("capacity_bps", "must be > 0");
  if (!Finite(r.workload_min_bps) || r.workload_min_bps < 0) return Bad("workload_min_bps", "must be >= 0");
  if (!Finite(r.workload_max_bps) || r.workload_max_bps < r.workload_min_bps)
    return Bad("workload_max_bps", "must be >= workload_min_bps");
  if (r.workload_max_bps > r.capacity_bps)
    return Bad("workload_max_bps", Format("(%.6g) must not exceed the link capacity (%.6g)", r.workload_max_bps,
                                          r.capacity_bps));
  if (!Finite(r.headroom_bps) || r.headroom_bps < 0) return Bad("headroom_bps", "must be >= 0");
  return OkStatus();
}

ClassShares ReserveBandwidth(const LinkReservation& r, double workload_bps,
                             const std::vector<ClassClaim>& claims) {
  ClassShares out;
  const double c = r.capacity_bps;
  const double w = std::max(0.0, Finite(workload_bps) ? workload_bps : r.workload_max_bps);
  const double seen = w + r.headroom_bps;
  out.high_budget_bps = c - r.workload_min_bps;
  out.medium_budget_bps = c - std::clamp(seen, r.workload_min_bps, r.workload_max_bps);
  out.low_budget_bps = std::max(0.0, c - std::max(seen, r.workload_min_bps));
  out.ceiling_bps.assign(claims.size(), 0.0);

  double taken = 0;
  const PriorityClass order[] = {PriorityClass::kHigh, PriorityClass::kMedium, PriorityClass::kLow};
  for (PriorityClass cls : order) {
    std::vector<size_t> members;
    std::vector<double> wants;
    for (size_t i = 0; i < claims.size(); ++i) {
      if (claims[i].cls != cls) continue;
      members.push_back(i);
      wants.push_back(claims[i].want_bps);
    }
    if (members.empty()) continue;
    double budget = cls == PriorityClass::kHigh     ? out.high_budget_bps
                    : cls == PriorityClass::kMedium ? out.medium_budget_bps
                                                    : out.low_budget_bps;
    double pool = std::max(0.0, std::min(budget, out.high_budget_bps) - taken);
    std::vector<double> shares = WaterFill(pool, wants);
    double used = 0;
    for (size_t k = 0; k < members.size(); ++k) {
      out.ceiling_bps[members[k]] = shares[k];
      used += shares[k];
    }
    taken += used;
    out.reasons.push_back(Format("%s: %zu migration(s), budget %.3f MB/s, pool %.3f MB/s, used %.3f MB/s",
                                 ToString(cls), members.size(), Mbs(budget), Mbs(pool), Mbs(used)));
  }
  out.workload_kept_bps = c - taken;
  return out;
}

}  // namespace migratefs::policy
