// Expression 1 of seed 004 and the slack ratio of Alg. 1, plus unit helpers.
#include <cmath>

#include "migratefs/policy.h"

namespace migratefs::policy {

double TimeLeft(double disk_left_bytes, double net_rate_bps, double dirty_rate_bps,
                double vmm_time_s) {
  if (disk_left_bytes <= 0) return vmm_time_s;
  const double drain = net_rate_bps - dirty_rate_bps;
  // The copy never converges while the VM dirties blocks as fast as we ship them.
  if (!(drain > 0)) return kInfinity;
  return disk_left_bytes / drain + vmm_time_s;
}

double Slack(double time_to_deadline_s, double time_left_s) {
  // A passed deadline or a copy that cannot finish is the worst slack there is:
  // both must put the task in danger and in warning.
  if (time_to_deadline_s <= 0 || std::isinf(time_left_s)) return 0;
  if (time_left_s <= 0) return kInfinity;
  return time_to_deadline_s / time_left_s;
}

uint64_t ToKbps(double bytes_per_s) {
  if (!(bytes_per_s > 0)) return 0;
  return static_cast<uint64_t>(std::ceil(bytes_per_s / 1000.0));
}

const char* ToString(NetAction action) {
  switch (action) {
    case NetAction::kNone: return "none";
    case NetAction::kReduce: return "reduce bandwidth";
    case NetAction::kIncrease: return "increase bandwidth";
  }
  return "?";
}

}  // namespace migratefs::policy
