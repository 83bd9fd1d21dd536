#include "broker/scheduler/topology.h"

#include <algorithm>
#include <set>

#include "broker/daemon/line_socket.h"
#include "broker/scheduler/document.h"

namespace migratefs::scheduler {

using nlohmann::json;

namespace {

Error Invalid(const std::string& message) { return MakeError(errc::kInvalidArgument, message); }

const json* ArrayOfObjects(const json& doc, const char* key, std::string* error,
                           const std::string& origin) {
  if (!doc.contains(key)) return nullptr;
  const json& a = doc[key];
  bool ok = a.is_array() && std::all_of(a.begin(), a.end(), [](const json& e) { return e.is_object(); });
  if (!ok) *error = origin + ": field \"" + key + "\" must be an array of tables ([[" + key + "]])";
  return ok ? &a : nullptr;
}

}  // namespace

Result<Topology> Topology::Load(const std::string& path) {
  auto doc = LoadDocument(path);
  if (!doc) return doc.error();
  return FromJson(doc.value(), path);
}

Result<Topology> Topology::FromJson(const json& doc, const std::string& origin) {
  if (!doc.is_object()) return Invalid(origin + ": must be a table/object");
  std::string error;
  const json* switches = ArrayOfObjects(doc, "switch", &error, origin);
  const json* hosts = ArrayOfObjects(doc, "host", &error, origin);
  const json* budgets = ArrayOfObjects(doc, "budget", &error, origin);
  if (!error.empty()) return Invalid(error);
  if (!hosts) return Invalid(origin + ": field \"host\" is missing (at least one [[host]])");
  for (const auto& [key, value] : doc.items()) {
    if (key != "switch" && key != "host" && key != "budget") return Invalid(origin + ": field \"" + key + "\" is not a known field");
  }
  Topology t;
  std::set<std::string> names, switch_names;
  std::vector<std::string> roots;
  if (switches) {
    for (size_t i = 0; i < switches->size(); ++i) {
      JsonFields f((*switches)[i], origin + ": switch[" + std::to_string(i) + "]: ");
      std::string name = f.String("name");
      std::string parent = f.String("parent", false);
      f.Known({"name", "parent"});
      if (!f.ok()) return Invalid(f.error());
      if (!names.insert(name).second) return Invalid(origin + ": switch[" + std::to_string(i) + "]: name \"" + name + "\" is used twice");
      switch_names.insert(name);
      if (parent.empty()) roots.push_back(name); else t.parent_[name] = parent;
    }
  }
  for (size_t i = 0; i < hosts->size(); ++i) {
    std::string where = origin + ": host[" + std::to_string(i) + "]: ";
    JsonFields f((*hosts)[i], where);
    HostInfo h;
    h.name = f.String("name");
    h.parent = f.String("switch");
    h.broker = f.String("broker");
    h.migratefs = f.String("migratefs");
    f.Known({"name", "switch", "broker", "migratefs"});
    if (f.ok() && !broker::ParseEndpoint(h.broker)) f.Fail("broker", "must be HOST:PORT");
    if (f.ok() && !broker::ParseEndpoint(h.migratefs)) f.Fail("migratefs", "must be HOST:PORT");
    if (!f.ok()) return Invalid(f.error());
    if (!names.insert(h.name).second) return Invalid(where + "name \"" + h.name + "\" is used twice");
    if (!switch_names.count(h.parent)) {
      return Invalid(where + "field \"switch\" names \"" + h.parent + "\", which is no [[switch]]");
    }
    t.parent_[h.name] = h.parent;
    t.hosts_[h.name] = h;
  }
  if (roots.size() != 1) {
    return Invalid(origin + ": the tree needs exactly one root switch (without \"parent\"), found " +
                   std::to_string(roots.size()));
  }
  for (const auto& [node, parent] : t.parent_) {
    if (!switch_names.count(parent)) {
      return Invalid(origin + ": \"" + node + "\" has parent \"" + parent + "\", which is no [[switch]]");
    }
    // Walking up must reach the root within |nodes| steps, or there is a cycle.
    std::string at = node;
    for (size_t steps = 0; t.parent_.count(at); ++steps) {
      if (steps > names.size()) return Invalid(origin + ": switches form a cycle through \"" + node + "\"");
      at = t.parent_.at(at);
    }
  }
  if (budgets) {
    for (size_t i = 0; i < budgets->size(); ++i) {
      std::string where = origin + ": budget[" + std::to_string(i) + "]: ";
      JsonFields f((*budgets)[i], where);
      std::string section = f.String("section");
      double kbps = f.Number("kbps", 0, true);
      f.Known({"section", "kbps"});
      if (f.ok() && !(kbps > 0)) f.Fail("kbps", "must be > 0 (KB/s)");
      bool known = false;
      for (const auto& [node, parent] : t.parent_) known = known || section == node + "-" + parent;
      if (f.ok() && !known) f.Fail("section", "names \"" + section + "\", which is no section (<node>-<parent>) of the tree");
      if (f.ok() && t.budgets_.count(section)) f.Fail("section", "\"" + section + "\" has two budgets");
      if (!f.ok()) return Invalid(f.error());
      t.budgets_[section] = kbps;
    }
  }
  return t;
}

const HostInfo* Topology::FindHost(const std::string& name) const {
  auto it = hosts_.find(name);
  return it == hosts_.end() ? nullptr : &it->second;
}

std::vector<std::string> Topology::ToRoot(const std::string& node) const {
  std::vector<std::string> chain{node};
  for (auto it = parent_.find(node); it != parent_.end(); it = parent_.find(it->second)) {
    chain.push_back(it->second);
  }
  return chain;
}

Result<std::vector<std::string>> Topology::Path(const std::string& source,
                                                const std::string& target) const {
  for (const std::string& h : {source, target}) {
    if (!FindHost(h)) return Invalid("host \"" + h + "\" is not in the topology");
  }
  std::vector<std::string> up = ToRoot(source), down = ToRoot(target);
  // Drop the common tail (the lowest common switch and everything above it) but keep
  // the common switch itself as the turning point.
  while (up.size() >= 2 && down.size() >= 2 && up[up.size() - 2] == down[down.size() - 2]) {
    up.pop_back();
    down.pop_back();
  }
  std::vector<std::string> path;
  for (size_t i = 0; i + 1 < up.size(); ++i) path.push_back(up[i] + "-" + up[i + 1]);
  for (size_t i = down.size() - 1; i-- > 0;) path.push_back(down[i] + "-" + down[i + 1]);
  return path;
}

}  // namespace migratefs::scheduler
