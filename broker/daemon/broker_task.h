// Internal to the broker's .cc files (broker*.cc), not part of its interface: the
// record the broker keeps per task (Broker::Task) and the small helpers its parts share.
// Who may touch which field, and under which lock, is said on the fields: the "Tick
// thread only" ones belong to the period loop (broker_period.cc) and the completion
// it hands the task to; everything else is guarded by Broker::mu_.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "broker/daemon/broker.h"
#include "broker/policy/reservation.h"

namespace migratefs::broker {
namespace broker_internal {

// A link without a section lies on every path from this host.
inline constexpr const char* kEverySection = "*";

// No class reservation, budget or cap limits the task (bytes/s).
inline constexpr double kNoCeiling = policy::ClassClaim::kInfinityBps;

inline bool IsTerminalPhase(const std::string& phase) {
  return phase == phase::kFailed || phase == phase::kCancelled || phase == phase::kFinished;
}

inline nlohmann::json NullIfZero(double v) { return v > 0 ? nlohmann::json(v) : nlohmann::json(nullptr); }

// States that count against max_parallel.
inline bool HoldsSlot(const std::string& state) {
  return state == "starting" || state == "running" || state == "completing";
}

}  // namespace broker_internal

struct Broker::Task {
  TaskSpec spec;
  std::string id;  // migratefs' migration id
  double started_s = 0;
  uint64_t sequence = 0;  // submission order (queue tie-break)

  // Tick thread only.
  policy::TaskState policy;
  uint64_t applied_net_kbps = 0;   // what migratefs was last told (0 = none)
  uint64_t applied_disk_kbps = 0;
  double last_tick_s = 0;
  bool release_pending = false;    // Decide() asked for a release this period

  // Guarded by Broker::mu_.
  std::string state = "running";   // running, completing, finished, failed, cancelled
  std::string error;
  double release_hold_until_s = 0;
  std::string phase;
  uint64_t bytes_total = 0, bytes_sent = 0, bytes_left = 0;
  double net_kbps = 0, dirty_kbps = 0, disk_kbps = 0;
  double network_limited_s = 0, disk_limited_s = 0, limited_s = 0;
  double slack = -1, time_left_s = -1;
  uint64_t shown_net_kbps = 0, shown_disk_kbps = 0;
  std::string allocation;           // section whose seed-000 rate set the limit ("" = none)
  double ceiling_bps = broker_internal::kNoCeiling;  // reservation / budget / cap, last period
  double queued_s = 0;              // when it was queued (0 = never)
  int periods = 0, backoff_periods = 0, release_requests_sent = 0;
  std::string hook_command;
  double hook_started_s = 0, hook_ended_s = 0, finished_s = 0;
  int hook_exit_code = -1;
  bool hook_ran = false;
};

}  // namespace migratefs::broker
