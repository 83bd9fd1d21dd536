// A fluid, fixed-time-step model of a share-nothing cloud in which disk-image
// migrations run under the broker policy of seed 004 (the same
// migratefs_policy library the broker daemon uses) or under no policy at all.
//
// Model (broker/sim/README.md has the full story and every assumption):
//  * Hosts hang off ToR switches, ToRs off a non-blocking core. Every link is full
//    duplex; a migration from host a to host b crosses a's uplink, b's downlink and,
//    across racks, the two ToR uplink directions between them.
//  * Tenants' traffic is a per-link demand redrawn every period; migrations share
//    what the tenants leave (max-min fair, two-round approximation), under their
//    network limits.
//  * Hot spots (shortages) start on load_pct % of machines every period and last
//    duration_periods, one period longer for each period in which migrations
//    saturate the machine's link. Such a period is an SLA violation period.
//  * The copy follows Expression 1: disk_left changes by (dirty - net) per second;
//    when it reaches 0 the task completes vmm_time_s later.
//  * Under policy broker, every task's broker runs Decide() every period_s from the
//    task's start (Alg. 1 sleeps first), with the rates of that period.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "broker/sim/scenario.h"
#include "migratefs/policy.h"

namespace migratefs::sim {

// One line of the optional per-period time series.
struct PeriodRow {
  int64_t period = 0;
  double time_s = 0;             // start of the period
  uint64_t active_tasks = 0;     // tasks copying at the end of the period
  uint64_t violations = 0;       // SLA violation periods counted in this period
  uint64_t hot_machines_crossed = 0;  // machines in shortage that carried migrations
  double migration_bytes = 0;    // bytes moved by migrations in this period
  uint64_t net_limited = 0;      // tasks with a network limit at the period's end
  uint64_t disk_limited = 0;     // tasks with a disk limit at the period's end
};

struct Summary {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0, max = 0;
};

struct Results {
  std::string policy;
  uint64_t seed = 0;
  double load_pct = 0;
  double deadline_s = 0;
  uint64_t machines = 0;
  uint64_t tasks = 0;               // tasks that arrived
  uint64_t tasks_completed = 0;
  uint64_t missed_deadlines = 0;    // completed late, or not completed at the end
  uint64_t important_tasks = 0;     // of `tasks`, marked important
  uint64_t important_missed = 0;    // of `missed_deadlines`, important
  uint64_t sla_violation_periods = 0;
  uint64_t hot_periods_crossed = 0; // (machine, period) in shortage carrying migrations
  Summary migration_time_s;         // arrival to completion, completed tasks
  double bytes_moved = 0;           // migration bytes put on the network
  double time_network_limited_s = 0;  // summed over tasks
  double time_disk_limited_s = 0;
  uint64_t decisions = 0;           // Decide() calls
  uint64_t backoff_decisions = 0;   // decisions taken with backoff == true
  uint64_t release_requests = 0;
  double simulated_s = 0;
  int64_t periods = 0;
  std::vector<PeriodRow> series;    // filled only if asked for
};

// Called for every Decide(): the task's index, what it saw, what it got.
using DecisionObserver = std::function<void(uint64_t task, const policy::Observation&,
                                            const policy::Decision&)>;

struct RunOptions {
  bool keep_series = false;
  DecisionObserver observer;
};

// Runs the whole scenario. Requires ValidateScenario(scenario).ok(). Deterministic:
// the same scenario (seed included) gives the same Results on any platform with
// IEEE doubles.
Results Simulate(const Scenario& scenario, const RunOptions& options = {});

}  // namespace migratefs::sim
