// One migration task as the scheduler hands it to the source broker (op "submit"),
// and its JSON form. broker/daemon/README.md "Socket ops" documents the fields.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "broker/policy/priority_class.h"
#include "migratefs/status.h"

namespace migratefs::broker {

struct TaskSpec {
  std::string vm;                     // VM name; unique among a broker's tasks
  std::vector<std::string> images;    // its disk files, relative to migratefs' SRC
  std::string source;                 // topology host names
  std::string target;
  std::string target_address;         // the target migratefs' listen HOST:PORT
  double deadline_s = 0;              // seconds since the epoch
  bool important = false;             // maps onto priority class high
  policy::PriorityClass priority = policy::kDefaultPriorityClass;  // "high"|"medium"|"low"
  int rank = 0;                       // informative: the scheduler's submission order key
  double max_kbps = 0;                // fleet cap from the scheduler (section budgets); 0 = none

  // The class the broker applies: high when important, else `priority`.
  policy::PriorityClass EffectiveClass() const { return policy::EffectiveClass(priority, important); }
  std::vector<std::string> path;      // the path's sections, source to target
  // section -> hosts of the *other* brokers whose tasks use that section too
  std::map<std::string, std::vector<std::string>> sharing;
};

// invalid_argument / bad_request naming the field ("task.deadline ...").
Result<TaskSpec> TaskSpecFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const TaskSpec& spec);

}  // namespace migratefs::broker
