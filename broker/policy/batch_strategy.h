// Serial vs gang migration of a batch of tasks that share a source or a path section
// (seed 003, "Determine migration strategy": high priority -> parallel; low priority,
// low contention -> parallel; low priority, moderate or high contention -> serial).
// broker/policy/README.md "Serial vs gang (seed 003)".
//
// The scheduler calls ChooseBatchStrategy() once per batch before it submits; the
// tasks it puts in `gang` start at once, those in `serial` one after another in that
// order (each when the one before it has ended), alongside the gang.
//
// Pure: no I/O, clocks, threads or randomness.
#pragma once

#include <string>
#include <vector>

#include "broker/policy/priority_class.h"
#include "migratefs/status.h"

namespace migratefs::policy {

enum class Contention { kLow, kModerate, kHigh };
const char* ToString(Contention c);

// Link utilisation (busiest direction / capacity, 0..1+) -> contention level:
// below `moderate` low, below `high` moderate, else high.
struct ContentionThresholds {
  double moderate = 0.5;
  double high = 0.8;
};
Status ValidateContentionThresholds(const ContentionThresholds& t);  // 0 < moderate < high
Contention ClassifyContention(double utilization, const ContentionThresholds& t);

struct BatchTask {
  std::string vm;
  PriorityClass cls = kDefaultPriorityClass;
  double size_bytes = 0;  // expected data to copy; 0 = unknown (ordered after known sizes)
};

struct BatchStrategy {
  std::vector<std::string> gang;    // start together
  std::vector<std::string> serial;  // one after another, in this order
  Contention contention = Contention::kLow;
  double utilization = 0;
  std::string mode;    // "gang" (serial empty), "serial" (gang empty) or "mixed"
  std::string reason;  // one line: which rule chose what
};

// Rules per task, by class and contention:
//   high                      -> gang (always)
//   medium, low/moderate      -> gang;  medium, high contention -> serial
//   low, low contention       -> gang;  low, moderate or high   -> serial
// The serial chain is ordered medium before low, then by size ascending (shortest
// first minimises the sum of completion times on one link; the makespan of a chain
// does not depend on its order), unknown sizes last, then the input order.
// `utilization` < 0 means "unknown" and counts as moderate.
BatchStrategy ChooseBatchStrategy(const std::vector<BatchTask>& tasks, double utilization,
                                  const ContentionThresholds& thresholds = {});

}  // namespace migratefs::policy
