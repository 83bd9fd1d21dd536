// Carries out a Plan: submits each task to its source broker (authenticated "submit"),
// then polls every broker ("task_status") until each task is finished, failed or
// cancelled, or the time runs out, and builds the JSON report. A broker that does not
// answer costs one rpc timeout per poll; its tasks keep their last known record and
// are flagged "broker_reachable": false. It never hangs.
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "broker/scheduler/plan.h"
#include "broker/scheduler/strategy.h"

namespace migratefs::scheduler {

struct RunOptions {
  std::string key;                 // the brokers' pre-shared key
  std::string from = "scheduler";  // sender name in the messages
  double poll_s = 1;
  double rpc_timeout_s = 3;
  double timeout_s = 0;            // give up polling after this; 0 = latest deadline + 120 s
  bool wait = true;                // false: submit and report the submissions only (serial
                                   // chains cannot be waited for: everything starts at once)
  StrategyMode strategy = StrategyMode::kAuto;  // serial vs gang per batch (strategy.h)
  policy::ContentionThresholds contention;
  std::function<double()> now;     // seconds since the epoch
  std::function<void(double)> sleep;
};

// Before submitting, asks every source broker for its `status` (link samples) and
// chooses serial or gang per batch (ApplyStrategies); a task of a serial chain is
// submitted when the one before it is finished, failed or cancelled (state "waiting"
// until then).
// Report: {"submitted_at", "tasks":[...per task...], "summary":{met, missed, failed,
// unfinished, limited_s}, "shared_sections":{...}, "strategies":[...per batch...]}.
// README "Scheduler report".
nlohmann::json RunPlan(const Plan& plan, const Topology& topology, const RunOptions& options);

// True when every task met its deadline.
bool AllMet(const nlohmann::json& report);

}  // namespace migratefs::scheduler
