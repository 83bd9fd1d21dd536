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
    double rank = 0;
    if (entry.contains("priority") && entry["priority"].is_string()) {
      auto c = policy::ParsePriorityClass(entry["priority"].get<std::string>(), "priority");
      if (!c) f.Fail("priority", "must be \"high\", \"medium\" or \"low\", got \"" +
                                     entry["priority"].get<std::string>() + "\"");
      else t.priority = c.value();
    } else if (entry.contains("priority")) {
      // Before classes, priority was the integer submission order: still read as rank.
      rank = f.Number("priority", 0);
      if (f.ok() && rank != static_cast<int>(rank)) f.Fail("priority", "must be \"high\", \"medium\" or \"low\"");
    }
    if (entry.contains("rank")) rank = f.Number("rank", 0);
    double size_mb = f.Number("size_mb", 0);
    f.Known({"vm", "disks", "source", "target", "deadline", "important", "priority", "rank", "size_mb"});
    if (f.ok() && !(t.deadline_in_s > 0)) f.Fail("deadline", "must be > 0 (seconds after submission)");
    if (f.ok() && rank != static_cast<int>(rank)) f.Fail("rank", "must be a whole number");
    if (f.ok() && !(size_mb >= 0)) f.Fail("size_mb", "must be >= 0 (MB, 1 MB = 10^6 bytes)");
    t.rank = static_cast<int>(rank);
    t.size_bytes = size_mb * 1e6;
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
    auto cx = policy::EffectiveClass(x->priority, x->important);
    auto cy = policy::EffectiveClass(y->priority, y->important);
    if (cx != cy) return cx < cy;
    return x->rank > y->rank;
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
    spec.rank = t->rank;
    plan.size_bytes[t->vm] = t->size_bytes;
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
  // Batches: connected components of "same source or a common section".
  std::vector<size_t> root(plan.specs.size());
  for (size_t i = 0; i < root.size(); ++i) root[i] = i;
  auto find = [&](size_t i) {
    while (root[i] != i) i = root[i] = root[root[i]];
    return i;
  };
  for (size_t i = 0; i < plan.specs.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      const auto& a = plan.specs[i];
      const auto& b = plan.specs[j];
      bool linked = a.source == b.source;
      for (const std::string& s : a.path) {
        linked = linked || std::find(b.path.begin(), b.path.end(), s) != b.path.end();
      }
      if (linked) root[find(i)] = find(j);
    }
  }
  std::map<size_t, size_t> batch_of;
  for (size_t i = 0; i < plan.specs.size(); ++i) {
    size_t r = find(i);
    if (!batch_of.count(r)) {
      batch_of[r] = plan.batches.size();
      plan.batches.emplace_back();
    }
    Batch& b = plan.batches[batch_of[r]];
    b.vms.push_back(plan.specs[i].vm);
    b.sources.push_back(plan.specs[i].source);
    b.sections.insert(b.sections.end(), plan.specs[i].path.begin(), plan.specs[i].path.end());
  }
  for (Batch& b : plan.batches) {
    for (auto* v : {&b.sources, &b.sections}) {
      std::sort(v->begin(), v->end());
      v->erase(std::unique(v->begin(), v->end()), v->end());
    }
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
  json out = {{"tasks", tasks}, {"shared_sections", shared}, {"strategies", plan.strategies}};
  if (!plan.after.empty()) out["after"] = plan.after;
  return out;
}

}  // namespace migratefs::scheduler
