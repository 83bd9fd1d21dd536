// The datacenter network as a tree: hosts hang off switches, switches off switches,
// one root. A *section* is the link between a node and its parent, named
// "<node>-<parent>". Static routing on a tree means the path between two hosts is
// unique: up from the source to the lowest common switch, down to the target.
//
// File (TOML or JSON), reference in broker/daemon/README.md "Scheduler":
//   [[switch]]  name = "core"                     (the root: no parent)
//   [[switch]]  name = "s1"   parent = "core"
//   [[host]]    name = "a"    switch = "s1"
//               broker = "10.78.0.1:7100"         (its broker's listen address)
//               migratefs = "10.78.0.1:7200"      (its migratefs listen= address)
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "migratefs/status.h"

namespace migratefs::scheduler {

struct HostInfo {
  std::string name;
  std::string parent;     // its switch
  std::string broker;     // HOST:PORT
  std::string migratefs;  // HOST:PORT
};

class Topology {
 public:
  // invalid_argument naming the file, the entry and the field: missing or mistyped
  // fields, duplicate names, unknown parents, cycles, no root or several roots.
  static Result<Topology> FromJson(const nlohmann::json& doc, const std::string& origin);
  static Result<Topology> Load(const std::string& path);

  const HostInfo* FindHost(const std::string& name) const;
  // Fleet caps ([[budget]] section = "s1-core", kbps = 50000): the migration bandwidth
  // all tasks crossing a section may use together, KB/s. Sections without one: absent.
  const std::map<std::string, double>& section_budgets() const { return budgets_; }
  // Sections from `source` to `target`, in travel order. invalid_argument for unknown
  // hosts; empty when source == target.
  Result<std::vector<std::string>> Path(const std::string& source, const std::string& target) const;

 private:
  std::vector<std::string> ToRoot(const std::string& node) const;  // node, parent, ..., root
  std::map<std::string, std::string> parent_;  // every node but the root
  std::map<std::string, HostInfo> hosts_;
  std::map<std::string, double> budgets_;  // section -> KB/s
};

}  // namespace migratefs::scheduler
