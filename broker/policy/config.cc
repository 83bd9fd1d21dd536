// Config validation: every check names the field so that scenario files, broker
// configs and command lines can report it as is.
#include <cmath>
#include <string>

#include "migratefs/policy.h"

namespace migratefs::policy {
namespace {

Status Invalid(const std::string& message) {
  return MakeError(errc::kInvalidArgument, message);
}

}  // namespace

Status ValidateConfig(const Config& c) {
  if (!std::isfinite(c.period_s) || c.period_s <= 0)
    return Invalid("period_s must be a positive number of seconds");
  if (!std::isfinite(c.danger_pct) || c.danger_pct <= 100)
    return Invalid("danger_pct must be greater than 100 (percent)");
  if (!std::isfinite(c.warning_pct) || c.warning_pct <= c.danger_pct)
    return Invalid("warning_pct must be greater than danger_pct");
  if (!std::isfinite(c.increase_bps) || c.increase_bps <= 0)
    return Invalid("increase_bps (C) must be positive");
  if (c.quiet_periods < 0) return Invalid("quiet_periods (n) must be >= 0");
  // 0 means "no limit" on the control socket, and limits travel in KB/s.
  if (!std::isfinite(c.min_network_bps) || c.min_network_bps < 1000)
    return Invalid("min_network_bps must be at least 1000 bytes/s (1 KB/s)");
  if (!std::isfinite(c.min_disk_bps) || c.min_disk_bps < 1000)
    return Invalid("min_disk_bps must be at least 1000 bytes/s (1 KB/s)");
  if (!std::isfinite(c.disk_target_pct) || c.disk_target_pct < 100)
    return Invalid("disk_target_pct must be at least 100 (percent)");
  return OkStatus();
}

}  // namespace migratefs::policy
