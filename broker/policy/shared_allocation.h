// Seed 000's allocation among the brokers that share one saturated path section
// (issue 11, item 2). Every broker on the section runs this same function on the same
// reports (its own and its peers'), so they agree on the rates without a leader;
// broker/daemon/README.md "Shared-section allocation" has the protocol.
//
// The pool is what the migrations on the section get together now (the sum of their
// observed rates: the section is saturated, so that is its share for migrations), minus
// nothing for tasks in danger: those are left out and keep following Alg. 1 (deadlines
// win), their bandwidth is not in the pool. The rest is re-split by AllocateRates()
// with V = bytes left and D = dirty rate, each rate capped by the task's ceiling.
//
// Pure: no I/O, clocks, threads or randomness. Deterministic: the input order does not
// matter (tasks are sorted by host, then VM).
#pragma once

#include <limits>
#include <map>
#include <string>
#include <vector>

#include "migratefs/status.h"

namespace migratefs::policy {

struct SharedTask {
  std::string host;          // the broker that owns it
  std::string vm;
  double bytes_left = 0;     // V
  double dirty_bps = 0;      // D
  double net_bps = 0;        // observed rate over the last period
  bool in_danger = false;    // slack < danger: not allocated, follows Alg. 1
  // Its class ceiling (seed 003's reservations, its task's max): it never gets more,
  // and what it cannot take goes to the others. Infinity = none.
  double ceiling_bps = std::numeric_limits<double>::infinity();
};

struct SectionAllocation {
  std::map<std::string, double> rate_bps;  // "host/vm" -> rate, tasks not in danger
  double pool_bps = 0;
  double total_s = 0;                      // the objective at these rates
  std::string reason;
};

// Key of a task in SectionAllocation::rate_bps.
std::string SharedKey(const std::string& host, const std::string& vm);

// Errors (the caller falls back to Alg. 2 alone): invalid_argument when fewer than two
// tasks are not in danger (nothing to split) or a value is negative/NaN;
// kRatesInfeasible when the dirty rates do not fit into the pool.
Result<SectionAllocation> AllocateSection(const std::vector<SharedTask>& tasks, int rounds);

}  // namespace migratefs::policy
