#include "broker/scheduler/plan.h"

#include <algorithm>
#include <set>

#include "broker/scheduler/document.h"

namespace migratefs::scheduler {

using nlohmann::json;

Result<std::vector<TaskEntry>> ParseTasks(const json& doc, const std::string& origin,
                                          const Topology& topology) {
  auto invalid = [](const std::string& m) { return MakeError(errc::kInvalidArgument, m); };
  if (!doc.is_object() || !doc.contains("task") || !doc["task"].is_array() || doc["task"].empty()) {
    return invalid(origin + ": field \"task\" is missing (at least one [[task]])");
  }
  for (const auto& [key, value] : doc.items()) {
    if (key != "task") return invalid(origin + ": field \"" + key + "\" is not a known field");
  }
  std::vector<TaskEntry> tasks;
  std::set<std::string> vms;
  for (size_t i = 0; i < doc["task"].size(); ++i) {
    const json& entry = doc["task"][i];
    std::string where = origin + ": task[" + std::to_string(i) + "]: ";
    if (!entry.is_object()) return invalid(where + "must be a table");
    JsonFields f(entry, where);
    TaskEntry t;
    t.vm = f.String("vm");
    t.disks = f.Strings("disks");
    t.source = f.String("source");
    t.target = f.String("target");
    t.deadline_in_s = f.Number("deadline", 0, true);
    t.important = f.Bool("important", false);
    double priority = f.Number("priority", 0);
    f.Known({"vm", "disks", "source", "target", "deadline", "important", "priority"});
    if (f.ok() && !(t.deadline_in_s > 0)) f.Fail("deadline", "must be > 0 (seconds after submission)");
    if (f.ok() && priority != static_cast<int>(priority)) f.Fail("priority", "must be a whole number");
    t.priority = static_cast<int>(priority);
    if (f.ok() && !topology.FindHost(t.source)) f.Fail("source", "names \"" + t.source + "\", which is no [[host]] of the topology");
    if (f.ok() && !topology.FindHost(t.target)) f.Fail("target", "names \"" + t.target + "\", which is no [[host]] of the topology");
    if (f.ok() && t.source == t.target) f.Fail("target", "is the source host");
    if (f.ok() && !vms.insert(t.vm).second) f.Fail("vm", "\"" + t.vm + "\" is listed twice");
    if (!f.ok()) return invalid(f.error());
    tasks.push_back(std::move(t));
  }
  return tasks;
}

Result<std::vector<TaskEntry>> LoadTasks(const std::string& path, const Topology& topology) {
  auto doc = LoadDocument(path);
  if (!doc) return doc.error();
  return ParseTasks(doc.value(), path, topology);
}

Plan MakePlan(const std::vector<TaskEntry>& tasks, const Topology& topology, double now_s) {
  std::vector<const TaskEntry*> order;
  for (const TaskEntry& t : tasks) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const TaskEntry* x, const TaskEntry* y) {
    if (x->important != y->important) return x->important;
    return x->priority > y->priority;
  });
  Plan plan;
  std::map<std::string, std::vector<std::string>> paths;
  for (const TaskEntry* t : order) {
    paths[t->vm] = topology.Path(t->source, t->target).value();  // hosts checked by ParseTasks
    for (const std::string& section : paths[t->vm]) plan.users[section].push_back(t->vm);
  }
  std::map<std::string, std::string> source_of;
  for (const TaskEntry& t : tasks) source_of[t.vm] = t.source;
  for (const TaskEntry* t : order) {
    broker::TaskSpec spec;
    spec.vm = t->vm;
    spec.images = t->disks;
    spec.source = t->source;
    spec.target = t->target;
    spec.target_address = topology.FindHost(t->target)->migratefs;
    spec.deadline_s = now_s + t->deadline_in_s;
    spec.important = t->important;
    spec.priority = t->priority;
    spec.path = paths[t->vm];
    for (const std::string& section : spec.path) {
      std::set<std::string> hosts;
      for (const std::string& other : plan.users[section]) {
        if (other != t->vm) hosts.insert(source_of[other]);
      }
      if (!hosts.empty()) spec.sharing[section].assign(hosts.begin(), hosts.end());
    }
    plan.specs.push_back(std::move(spec));
  }
  return plan;
}

json PlanJson(const Plan& plan) {
  json tasks = json::array();
  for (const broker::TaskSpec& spec : plan.specs) tasks.push_back(broker::ToJson(spec));
  json shared = json::object();
  for (const auto& [section, vms] : plan.users) {
    if (vms.size() >= 2) shared[section] = vms;
  }
  return {{"tasks", tasks}, {"shared_sections", shared}};
}

}  // namespace migratefs::scheduler
