// The broker's per-task resource policy: seed 004, Expression 1, Algorithm 1
// (PriorityBasedMigrationsManagement: *when* to limit) and Algorithm 2
// (setNetworkLimit: *how* to set the network limit). DESIGN.md "Broker policy".
//
// Pure code, shared unchanged by the broker daemon (broker/) and the simulator
// (broker/sim/): observed rates, time and flags in; limits out. No I/O, no clocks,
// no threads, no randomness. The caller owns one TaskState per migration task,
// keeps it between periods, and calls Decide() once per period.
//
// Units everywhere: bytes, bytes per second, seconds (double). The control API
// speaks KB/s with 1 KB = 1000 bytes; converting is the caller's job (see
// ToKbps()). Ratios such as slack are plain ratios (3.0 == 300%).
//
// Every interpretation of the paper that this code commits to is listed in
// broker/policy/README.md ("Ambiguities and our choices").
//
// The same library also holds the rate allocation of seed 000 (several migrations on
// one link, one optimal rate each): AllocateRates() in broker/policy/rate_allocation.h,
// included below; README "Rate allocation (seed 000)".
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "broker/policy/rate_allocation.h"
#include "migratefs/status.h"

namespace migratefs::policy {

inline constexpr double kInfinity = std::numeric_limits<double>::infinity();

// Tunables. The defaults are the paper's (danger 300%, warning 400%, period 60 s);
// C, n and the floors are not given by the paper and are ours.
struct Config {
  double period_s = 60;           // time between two Decide() calls (informative:
                                  // Decide() uses the observed rates, not this)
  double danger_pct = 300;        // slack below this = danger (percent)
  double warning_pct = 400;       // slack at or below this = warning (percent)
  double increase_bps = 50e6;     // C of Alg. 2: additive increase per quiet period, bytes/s
  int quiet_periods = 5;          // n of Alg. 2: limit dropped once more than n
                                  // consecutive periods saw no backoff
  double min_network_bps = 1e6;   // floor of the network limit (halving stops here; > 0
                                  // because 0 means "no limit" in the control API)
  double min_disk_bps = 1e6;      // floor of the disk limit
  double disk_target_pct = 100;   // the disk limit aims at this slack: 100% = Expression 1
                                  // with finish_time = time to deadline
};

// Checks ranges and orderings (100 < danger < warning, floors >= 1000 B/s, ...).
// Error code errc::kInvalidArgument; the message names the field.
Status ValidateConfig(const Config& config);

// What the broker measured for one task over the last period.
struct Observation {
  double now_s = 0;               // the caller's clock, same origin as deadline_s
  double deadline_s = 0;          // absolute time by which the migration must be done
  double disk_left_bytes = 0;     // bytes still to ship (dirty + never sent)
  double net_rate_bps = 0;        // bytes/s the migration moved over the network
  double dirty_rate_bps = 0;      // bytes/s at which the VM dirtied already-sent blocks
  double disk_write_rate_bps = 0; // bytes/s the VM wrote to its images (>= dirty rate)
  double vmm_time_s = 0;          // the hypervisor's own time after the disk copy
  bool backoff = false;           // a link on the path is saturated, or a broker in
                                  // danger asked us to release bandwidth
  bool important = false;         // the operator marked this task important
};

// Alg. 2's memory of what it did last.
enum class NetAction {
  kNone,      // no network limit (start, or after it was dropped/ignored)
  kReduce,    // last period lowered the limit ("reduce bandwidth")
  kIncrease,  // last period held or raised it ("increase bandwidth")
};

// Per-task state that Decide() reads and updates. Zero-initialised = a new task.
// The caller persists it between periods and must not change it.
struct TaskState {
  NetAction last_action = NetAction::kNone;
  double last_ok_net_bps = 0;                   // Alg. 2's lastOKnetlimit (0 = unknown)
  int quiet_periods = 0;                        // consecutive periods with backoff == false
  std::optional<double> network_limit_bps;      // current limits; nullopt = none
  std::optional<double> disk_limit_bps;
  double unlimited_dirty_rate_bps = 0;          // dirty rate seen before the disk limit
  double unlimited_write_rate_bps = 0;          // was set; used to decide when to lift it
};

// Decide()'s answer. The limits are the complete desired state (not deltas): the
// caller applies them when they differ from what it set before.
struct Decision {
  std::optional<double> network_limit_bps;  // nullopt = no network limit
  std::optional<double> disk_limit_bps;     // nullopt = no disk limit
  bool release_request = false;  // ask the brokers that share this task's saturated
                                 // path sections to release bandwidth (they see
                                 // backoff == true in their next period)
  double time_left_s = 0;        // Expression 1 (may be kInfinity)
  double slack = 0;              // time_to_deadline / time_left as a ratio
  std::vector<std::string> reasons;  // one short line per branch taken, for logs
};

// Expression 1: disk_left / (net_rate - dirty_rate) + vmm_time; kInfinity when
// net_rate <= dirty_rate and something is left to ship. disk_left <= 0 gives vmm_time.
double TimeLeft(double disk_left_bytes, double net_rate_bps, double dirty_rate_bps,
                double vmm_time_s);

// time_to_deadline / time_left. 0 when time_left is infinite or the deadline has
// passed; kInfinity when time_left == 0 and the deadline is ahead.
double Slack(double time_to_deadline_s, double time_left_s);

// One period of Alg. 1 for one task (calls Alg. 2 as needed). Updates *state.
// Requires ValidateConfig(config).ok().
Decision Decide(const Config& config, const Observation& obs, TaskState* state);

// Alg. 2 alone, exposed for tests and for callers that run Alg. 1 themselves.
// `backoff` is the effective flag (Alg. 1 decides when to pass true). Returns the
// new network limit (nullopt = none) and updates state->last_action,
// state->last_ok_net_bps, state->network_limit_bps. Does not touch quiet_periods
// (Decide() counts them from the observed flag before calling this).
std::optional<double> SetNetworkLimit(const Config& config, double net_rate_bps,
                                      bool backoff, TaskState* state,
                                      std::vector<std::string>* reasons);

// bytes/s -> KB/s for the control API (1 KB = 1000 bytes), rounded up so that a
// small positive limit never becomes 0 ("no limit").
uint64_t ToKbps(double bytes_per_s);

const char* ToString(NetAction action);

}  // namespace migratefs::policy
