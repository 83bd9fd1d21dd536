// From a task file and a topology to what each source broker is told: the path of
// every task, the sections shared by several tasks, and for each task and section
// the hosts of the *other* tasks' brokers that use it (so a broker in danger asks
// only those). Pure: no I/O besides loading the files.
//
// Task file (TOML or JSON):
//   [[task]]
//   vm = "vm1"                    disks = ["vm1.img"]
//   source = "a"                  target = "b"
//   deadline = 120                (seconds after submission)
//   important = false             (maps onto priority "high")
//   priority = "medium"           ("high" | "medium" | "low"; default medium)
//   rank = 0                      (higher is submitted first within a class)
//   size_mb = 0                   (optional: data to copy, orders serial chains)
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "broker/daemon/task_spec.h"
#include "broker/scheduler/topology.h"

namespace migratefs::scheduler {

struct TaskEntry {
  std::string vm;
  std::vector<std::string> disks;
  std::string source, target;
  double deadline_in_s = 0;
  bool important = false;
  policy::PriorityClass priority = policy::kDefaultPriorityClass;
  int rank = 0;
  double size_bytes = 0;  // 0 = unknown
};

// invalid_argument naming the file, "task[i]" and the field; also unknown hosts,
// source == target and a VM listed twice.
Result<std::vector<TaskEntry>> ParseTasks(const nlohmann::json& doc, const std::string& origin,
                                          const Topology& topology);
Result<std::vector<TaskEntry>> LoadTasks(const std::string& path, const Topology& topology);

// A batch: tasks linked by a common source host or a common path section.
struct Batch {
  std::vector<std::string> vms;       // submission order
  std::vector<std::string> sources;   // their source hosts, sorted
  std::vector<std::string> sections;  // every section of their paths, sorted
};

struct Plan {
  std::vector<broker::TaskSpec> specs;                    // submission order
  std::map<std::string, std::vector<std::string>> users;  // section -> VMs using it (>= 2: shared)
  std::vector<Batch> batches;
  std::map<std::string, double> size_bytes;               // vm -> size hint (0 = unknown)
  // Filled by ApplyStrategies() (strategy.h): vm -> the vm it waits for (serial
  // chains), and per batch the choice and its reason.
  std::map<std::string, std::string> after;
  nlohmann::json strategies = nlohmann::json::array();
};

// Paths and sharing; deadlines become absolute (`now_s` + deadline). Submission
// order: class (important = high) first, then higher rank, then the file's order.
Plan MakePlan(const std::vector<TaskEntry>& tasks, const Topology& topology, double now_s);

nlohmann::json PlanJson(const Plan& plan);

}  // namespace migratefs::scheduler
