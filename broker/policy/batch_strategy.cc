#include "broker/policy/batch_strategy.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "broker/policy/format.h"

namespace migratefs::policy {

const char* ToString(Contention c) {
  switch (c) {
    case Contention::kLow: return "low";
    case Contention::kModerate: return "moderate";
    case Contention::kHigh: return "high";
  }
  return "?";
}

Status ValidateContentionThresholds(const ContentionThresholds& t) {
  if (!std::isfinite(t.moderate) || t.moderate <= 0)
    return MakeError(errc::kInvalidArgument, "field \"moderate\" must be > 0");
  if (!std::isfinite(t.high) || t.high <= t.moderate)
    return MakeError(errc::kInvalidArgument, "field \"high\" must be greater than \"moderate\"");
  return OkStatus();
}

Contention ClassifyContention(double utilization, const ContentionThresholds& t) {
  if (utilization < t.moderate) return Contention::kLow;
  if (utilization < t.high) return Contention::kModerate;
  return Contention::kHigh;
}

BatchStrategy ChooseBatchStrategy(const std::vector<BatchTask>& tasks, double utilization,
                                  const ContentionThresholds& thresholds) {
  BatchStrategy out;
  bool unknown = !(utilization >= 0);
  out.utilization = unknown ? -1 : utilization;
  out.contention = unknown ? Contention::kModerate : ClassifyContention(utilization, thresholds);
  std::vector<size_t> chain;
  for (size_t i = 0; i < tasks.size(); ++i) {
    PriorityClass c = tasks[i].cls;
    bool serial = (c == PriorityClass::kLow && out.contention != Contention::kLow) ||
                  (c == PriorityClass::kMedium && out.contention == Contention::kHigh);
    if (serial) {
      chain.push_back(i);
    } else {
      out.gang.push_back(tasks[i].vm);
    }
  }
  std::stable_sort(chain.begin(), chain.end(), [&](size_t a, size_t b) {
    const BatchTask& x = tasks[a];
    const BatchTask& y = tasks[b];
    if (x.cls != y.cls) return x.cls < y.cls;
    bool xk = x.size_bytes > 0, yk = y.size_bytes > 0;
    if (xk != yk) return xk;
    return xk && x.size_bytes < y.size_bytes;
  });
  for (size_t i : chain) out.serial.push_back(tasks[i].vm);
  // A chain of one is just a task started at once.
  if (out.serial.size() == 1) {
    out.gang.push_back(out.serial.front());
    out.serial.clear();
  }
  out.mode = out.serial.empty() ? "gang" : out.gang.empty() ? "serial" : "mixed";
  std::string util = unknown ? std::string("unknown (counted as moderate)")
                             : internal::Format("%.0f%%", utilization * 100);
  std::string rule;
  if (out.mode == "gang") {
    rule = out.contention == Contention::kLow ? "low contention: every class in parallel"
                                              : "only classes that go in parallel at this contention";
  } else {
    rule = out.contention == Contention::kHigh
               ? "high contention: medium and low one after another, high in parallel"
               : "moderate contention: low one after another, high and medium in parallel";
  }
  out.reason = internal::Format("link utilisation %s -> %s contention; %s (%zu parallel, %zu serial)",
                                util.c_str(), ToString(out.contention), rule.c_str(), out.gang.size(),
                                out.serial.size());
  return out;
}

}  // namespace migratefs::policy
