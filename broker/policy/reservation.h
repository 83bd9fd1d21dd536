// Bandwidth reservations per priority class on one host link (seed 003, "Bandwidth
// Reservation Algorithm"): the tenants' workload keeps a lower limit and an upper
// limit; migrations of each class get what their class rule leaves them.
// broker/policy/README.md "Priority classes and reservations (seed 003)".
//
//   high    the class may take everything above the workload's lower limit:
//           budget = C - min
//   medium  what is left above the upper limit, growing into bandwidth the workload
//           leaves idle, never below the lower limit:
//           budget = C - clamp(W + headroom, min, max)
//   low     only what is left: budget = C - max(W + headroom, min), and it is served
//           last, so any shortage is taken from it first (it yields first)
// where C is the link capacity (one direction), W the workload observed on the link
// (its traffic without our migrations) and headroom a margin left above W so that a
// growing workload is seen growing. Classes are served in order high, medium, low:
// a class gets min(its budget, C - min) minus what the classes before it took, split
// max-min fairly among its migrations (each capped by what it asks for).
//
// Pure: observations in, ceilings out. No I/O, clocks, threads or randomness.
#pragma once

#include <string>
#include <vector>

#include "broker/policy/priority_class.h"
#include "migratefs/status.h"

namespace migratefs::policy {

struct LinkReservation {
  double capacity_bps = 0;      // C, one direction, > 0
  double workload_min_bps = 0;  // lower limit kept for the workload, 0 .. max
  double workload_max_bps = 0;  // upper limit, min .. capacity
  double headroom_bps = 0;      // margin above the observed workload (medium, low), >= 0
};

// invalid_argument naming the field (capacity_bps, workload_min_bps, workload_max_bps,
// headroom_bps): e.g. a reservation above the link's capacity, or min > max.
Status ValidateReservation(const LinkReservation& r);

struct ClassClaim {
  PriorityClass cls = kDefaultPriorityClass;
  double want_bps = kInfinityBps;  // at most this is useful to the migration
  static constexpr double kInfinityBps = 1e300;
};

struct ClassShares {
  std::vector<double> ceiling_bps;  // per claim, input order: the most it may send
  double high_budget_bps = 0;       // the class budgets before sharing
  double medium_budget_bps = 0;
  double low_budget_bps = 0;
  double workload_kept_bps = 0;     // C minus what the migrations may take in total
  std::vector<std::string> reasons;
};

// `workload_bps` is W (>= 0; the caller subtracts its own migrations' traffic from the
// link counter). A ceiling may be 0 (nothing left for that class): the caller applies
// its own floor. Requires ValidateReservation(r).ok().
ClassShares ReserveBandwidth(const LinkReservation& r, double workload_bps,
                             const std::vector<ClassClaim>& claims);

}  // namespace migratefs::policy
