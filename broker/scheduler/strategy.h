// Serial vs gang per batch (issue 11, item 4) and the section budgets (item 5), as the
// scheduler applies them to a Plan: the choice itself is policy::ChooseBatchStrategy()
// (broker/policy/batch_strategy.h); this file measures contention from the brokers'
// link samples and turns the choice into "wait for" edges and per-task caps.
#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "broker/policy/batch_strategy.h"
#include "broker/scheduler/plan.h"

namespace migratefs::scheduler {

enum class StrategyMode { kAuto, kGang, kSerial };

// Busiest direction / capacity over the links a batch uses, from the `status` answers
// of its source brokers (host -> answer; a missing host is unknown). A link counts when
// its section is on the batch's paths or it has no section (on every path of its host).
// -1 when no such link was reported.
double BatchUtilization(const Batch& batch, const std::map<std::string, nlohmann::json>& status);

// Fills plan->after and plan->strategies, and sets spec.max_kbps from the topology's
// section budgets: a section's budget is split equally among the tasks that cross it at
// the same time (the gang tasks on it, plus one for a serial chain on it); a task takes
// the smallest share over its path. kGang / kSerial force the mode (the reason says
// so); kSerial chains every task of a batch in ChooseBatchStrategy's order.
void ApplyStrategies(Plan* plan, const Topology& topology, const std::map<size_t, double>& utilization,
                     StrategyMode mode, const policy::ContentionThresholds& thresholds = {});

}  // namespace migratefs::scheduler
