// Rate allocation for several migrations that share one link: seed 000
// (Netalkar, "Minimizing Service Interruption during Live Multiple VM Migration"),
// equations 6-8. broker/policy/README.md "Rate allocation (seed 000)".
//
// Model. M migrations share a link of capacity R. Migration j has V_j bytes left and
// its VM dirties D_j bytes/s. It gets one constant rate r_j for all its rounds (the
// seed's table and code use one rate per VM). With n rounds, round 0 ships V_j, round
// i ships what was dirtied during round i-1, rounds 0..n-1 are pre-copy and round n is
// the final (stop-and-copy) phase. With x_j = D_j / r_j:
//   T_pre  = sum_j (V_j / r_j) * sum_{i=0}^{n-1} x_j^i        (eq. 6)
//   T_down = sum_j (V_j / r_j) * x_j^n                        (eq. 7)
//   minimise T_pre + T_down  s.t.  r_j >= D_j,  sum_j r_j <= R  (eq. 8)
// The objective is a posynomial, convex in r (and in log r), strictly decreasing in
// every r_j with V_j > 0, so the capacity is always used up (sum r_j == R) and the
// minimiser is unique. The seed writes r_j > D_j (8b); its own solver code imposes
// D <= r, and the objective is finite and continuous at r_j = D_j, so we return the
// minimiser over r_j >= D_j and flag every migration whose rate sits on that floor
// (at_floor[j]): it only occurs for a migration that is small next to the others.
//
// Solver: exact up to double rounding (rates ~1e-12 relative). The KKT conditions
// say -df_j/dr_j == lambda for every migration above its floor and <= lambda on the
// floor; we bisect on lambda (log-space) and, for each lambda, on each r_j.
//
// Units: bytes, bytes/s, seconds (double), as the rest of the policy library; the
// CLI (migratefs-scheduler rates) converts from MB and MB/s with 1 MB = 10^6 bytes.
// Pure: no I/O, no clocks, no threads, no randomness.
#pragma once

#include <string>
#include <vector>

#include "migratefs/status.h"

namespace migratefs::policy {

// Error code of AllocateRates() when no allocation exists (sum_j D_j >= R): with
// r_j > D_j the rates would add up to more than the link carries.
inline constexpr const char* kRatesInfeasible = "infeasible";

// Largest accepted round count. (D/r)^n vanishes long before this for every
// migration that is not on its floor; the seed's figures stop at 10.
inline constexpr int kMaxRounds = 100;

struct RateProblem {
  double capacity_bps = 0;        // R, > 0
  std::vector<double> size_bytes; // V_j, one per migration, >= 0, at least one
  std::vector<double> dirty_bps;  // D_j, >= 0: one per migration, or a single value for all
  int rounds = 0;                 // n, 1..kMaxRounds: rounds 0..n-1 pre-copy, round n final
};

struct RateAllocation {
  std::vector<double> rates_bps;  // r_j, same order as size_bytes; sum == capacity
                                  // (to rounding) unless every V_j == 0
  std::vector<bool> at_floor;     // r_j == D_j: the optimum wants less than the floor
  double total_s = 0;             // T_pre + T_down at rates_bps (the objective)
  double precopy_s = 0;           // T_pre (eq. 6), summed over migrations
  double downtime_s = 0;          // T_down (eq. 7), summed over migrations
  double multiplier = 0;          // lambda: seconds of objective saved per extra byte/s
                                  // of capacity (0 when every V_j == 0)
};

// Checks the fields (errc::kInvalidArgument, the message names the field: capacity_bps,
// size_bytes[j], dirty_bps[j], rounds) and feasibility (code kRatesInfeasible when
// sum_j D_j >= R). Migrations with V_j == 0 get r_j = D_j.
Status ValidateRateProblem(const RateProblem& problem);

// Solves the problem above. On error returns what ValidateRateProblem() returns.
Result<RateAllocation> AllocateRates(const RateProblem& problem);

// One migration's share of the objective at rate r: (V/r) * sum_{i=0}^{n} (D/r)^i,
// split into pre-copy (i < n) and final phase (i == n). r > 0.
struct MigrationTimes {
  double precopy_s = 0;
  double downtime_s = 0;
};
MigrationTimes RoundTimes(double size_bytes, double dirty_bps, double rate_bps, int rounds);

}  // namespace migratefs::policy
