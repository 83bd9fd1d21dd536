// migratefs-sim --batch: several migrations that share one host link, run under the
// same seed-000 allocator (policy::AllocateRates), seed-003 class reservations
// (policy::ReserveBandwidth) and serial-vs-gang choice (policy::ChooseBatchStrategy)
// as the broker and the scheduler. broker/sim/README.md "Batches on one link".
//
// Model (fluid, fixed tick). The link carries C bytes/s; a tenants' workload wants W
// bytes/s (constant) and gets what the migrations leave. Each migration j has V_j
// bytes of disk, a VM dirtying D_j bytes/s and R_j bytes of RAM; it runs seed 000's
// rounds: round 0 ships V_j, round i ships what the VM dirtied during round i-1, for
// rounds 0..n-1 (pre-copy, our phases 1-2). Then phase 3 (synchronous mirroring):
// the last round's dirty data and the RAM (the hypervisor's move) are shipped while
// the VM's writes are mirrored; the phase-3 time is our "downtime". A migration's rate
// is min(its share, stream_max) (a single sender's ceiling, 0 = none).
//
// Strategies: gang (every migration at once), serial (one after another in the order
// ChooseBatchStrategy gives a chain), auto (ChooseBatchStrategy at contention W/C).
// Shares among running migrations: the class reservation first, then within a class
// equal (max-min) or seed 000's optimal rates, re-solved whenever one finishes.
//
// Pure computation, deterministic.
#pragma once

#include <string>
#include <vector>

#include "broker/policy/priority_class.h"
#include "migratefs/status.h"

namespace migratefs::sim {

struct BatchVm {
  std::string name;
  double size_bytes = 0;    // V
  double dirty_bps = 0;     // D
  double ram_bytes = 0;     // shipped in phase 3
  policy::PriorityClass cls = policy::kDefaultPriorityClass;
};

struct BatchScenario {
  double capacity_bps = 125e6;   // [link] capacity_mb_s
  double workload_bps = 0;       // [link] workload_mb_s: the tenants' demand
  double workload_min_bps = 0;   // [link] workload_min_mb_s / workload_max_mb_s:
  double workload_max_bps = 0;   //   seed 003's reservation (both 0 = none)
  int rounds = 3;                // [run] rounds: n
  double stream_max_bps = 0;     // [run] stream_max_mb_s: one migration's ceiling (0 = none)
  double tick_s = 0.01;          // [run] tick_s
  double time_limit_s = 86400;   // [run] time_limit_s
  std::string strategy = "auto";     // [run] strategy: auto | gang | serial
  std::string allocation = "optimal";  // [run] allocation: optimal | equal
  bool resplit = true;           // [run] resplit: re-share when a migration starts or ends;
                                 // false = seed 000's model (rates fixed for a migration's
                                 // life, a finished one's bandwidth stays unused)
  double period_s = 0;           // [run] period_s: with resplit, also re-share every
                                 // period from the data left (the broker's loop); 0 = only
                                 // when a migration starts or ends
  std::vector<BatchVm> vms;      // [[vm]] name, size_mb, dirty_mb_s, ram_mb, priority
};

Result<BatchScenario> ParseBatchScenario(const std::string& toml_text, const std::string& source);
Result<BatchScenario> LoadBatchScenario(const std::string& path);
Status ValidateBatchScenario(const BatchScenario& s);

struct BatchVmResult {
  std::string name;
  double start_s = 0, phase3_s = 0, end_s = 0;  // end < 0: not finished in time
  double downtime_s = 0;                        // end - phase3
  double bytes_sent = 0;
};

struct BatchResults {
  std::string strategy;     // what ran: gang | serial | mixed
  std::string allocation;
  std::string reason;       // ChooseBatchStrategy's reason (or "forced")
  double makespan_s = 0;           // last end
  double sum_completion_s = 0;     // sum of ends (seed 000's objective, all start at 0)
  double total_downtime_s = 0;     // sum of phase-3 times
  double max_downtime_s = 0;
  double bytes_moved = 0;
  double workload_min_bps = 0;     // lowest workload throughput while migrations ran
  bool all_finished = true;
  bool resplit = true;
  std::vector<BatchVmResult> vms;
};

// Requires ValidateBatchScenario(s).ok().
BatchResults SimulateBatch(const BatchScenario& s);

std::string BatchToJson(const BatchResults& r);
std::string BatchToText(const BatchResults& r);

}  // namespace migratefs::sim
