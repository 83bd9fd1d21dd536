// Alg. 1 (PriorityBasedMigrationsManagement) of seed 004, one period per call:
// when to touch the network limit (Alg. 2) and when to limit the VM's disk writes.
#include <algorithm>
#include <cmath>

#include "broker/policy/format.h"
#include "migratefs/policy.h"

namespace migratefs::policy {
namespace {

using internal::Format;
using internal::Mbs;

// The disk write limit that makes Expression 1 hold with finish_time =
// time_to_deadline / target (target 1.0 = exactly the deadline): the copy must
// drain at disk_left / (finish_time - vmm_time), so the VM may dirty at most
// net_rate minus that. Dirtying is assumed proportional to writing (the observed
// write/dirty ratio converts the dirty budget into a write limit).
double DiskLimitFor(const Config& config, const Observation& obs, double time_to_deadline) {
  const double copy_time = time_to_deadline / (config.disk_target_pct / 100) - obs.vmm_time_s;
  if (!(copy_time > 0)) return config.min_disk_bps;  // deadline unreachable: slowest VM
  const double max_dirty = obs.net_rate_bps - obs.disk_left_bytes / copy_time;
  if (!(max_dirty > 0)) return config.min_disk_bps;
  const double write_per_dirty = (obs.dirty_rate_bps > 0 && obs.disk_write_rate_bps > 0)
                                     ? obs.disk_write_rate_bps / obs.dirty_rate_bps
                                     : 1.0;
  return std::max(max_dirty * write_per_dirty, config.min_disk_bps);
}

void DecideNetwork(const Config& config, const Observation& obs, double slack,
                   TaskState* state, Decision* d) {
  const double danger = config.danger_pct / 100;
  const bool in_danger = slack < danger;
  auto& why = d->reasons;

  if (obs.important && in_danger) {
    // Important tasks are the first to ignore congestion and to make the others
    // back off (Section IV, "Priority-Based Resource Brokers").
    if (state->network_limit_bps) why.push_back("important task in danger: network limit dropped");
    state->network_limit_bps.reset();
    state->last_action = NetAction::kNone;
    d->release_request = true;
    why.push_back(Format("important, slack %.2f < danger %.2f: ignore congestion, "
                         "ask path peers to release bandwidth", slack, danger));
    return;
  }
  if (!in_danger && obs.backoff) {  // Alg. 1 lines 6-7
    why.push_back(Format("slack %.2f >= danger %.2f and backoff: back off", slack, danger));
    SetNetworkLimit(config, obs.net_rate_bps, true, state, &why);
    return;
  }
  if (state->last_action == NetAction::kNone) return;  // unlimited and nothing to do
  if (obs.backoff) {
    // In danger, congested, not important: line 6 is false, so the limit stays as
    // it is (no further reduction, no increase into a congested path).
    why.push_back(Format("slack %.2f < danger %.2f: not backing off, limit held", slack,
                         danger));
    return;
  }
  // A limit is in force and the path is quiet: Alg. 2 runs its recovery branches.
  SetNetworkLimit(config, obs.net_rate_bps, false, state, &why);
}

void DecideDisk(const Config& config, const Observation& obs, double slack,
                double time_to_deadline, TaskState* state, Decision* d) {
  const double warning = config.warning_pct / 100;
  auto& why = d->reasons;

  if (slack <= warning) {  // Alg. 1 lines 9-10
    if (!state->disk_limit_bps) {
      state->unlimited_dirty_rate_bps = obs.dirty_rate_bps;
      state->unlimited_write_rate_bps = obs.disk_write_rate_bps;
    }
    state->disk_limit_bps = DiskLimitFor(config, obs, time_to_deadline);
    why.push_back(Format("slack %.2f <= warning %.2f: disk limit %.1f MB/s", slack, warning,
                         Mbs(*state->disk_limit_bps)));
    return;
  }
  if (!state->disk_limit_bps) return;
  // Out of warning, but maybe only thanks to the limit: lift it only if the VM's
  // unthrottled dirty rate would keep the slack above warning (no flapping).
  const double dirty = std::max(obs.dirty_rate_bps, state->unlimited_dirty_rate_bps);
  const double unlimited_slack =
      Slack(time_to_deadline, TimeLeft(obs.disk_left_bytes, obs.net_rate_bps, dirty,
                                       obs.vmm_time_s));
  if (unlimited_slack > warning) {
    state->disk_limit_bps.reset();
    why.push_back(Format("slack without disk limit %.2f > warning %.2f: disk limit lifted",
                         unlimited_slack, warning));
  } else {
    why.push_back(Format("slack without disk limit %.2f <= warning %.2f: disk limit kept",
                         unlimited_slack, warning));
  }
}

}  // namespace

Decision Decide(const Config& config, const Observation& obs, TaskState* state) {
  Decision d;
  const double time_to_deadline = obs.deadline_s - obs.now_s;
  d.time_left_s = TimeLeft(obs.disk_left_bytes, obs.net_rate_bps, obs.dirty_rate_bps,
                           obs.vmm_time_s);
  d.slack = Slack(time_to_deadline, d.time_left_s);

  // consecutivePeriodsWithoutBackOff of Alg. 2 counts the observed flag, this period
  // included, whatever branch runs.
  state->quiet_periods = obs.backoff ? 0 : state->quiet_periods + 1;

  DecideNetwork(config, obs, d.slack, state, &d);
  DecideDisk(config, obs, d.slack, time_to_deadline, state, &d);
  d.network_limit_bps = state->network_limit_bps;
  d.disk_limit_bps = state->disk_limit_bps;
  return d;
}

}  // namespace migratefs::policy
