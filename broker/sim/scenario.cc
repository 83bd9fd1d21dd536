// Scenario files: TOML -> Scenario, with errors that name the field.
#include "broker/sim/scenario.h"

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <toml++/toml.h>
#include <vector>

namespace migratefs::sim {
namespace {

Error Bad(const std::string& source, const std::string& field, const std::string& what) {
  return MakeError(errc::kInvalidArgument, source + ": " + field + ": " + what);
}

// One known key: how to store its node, or a complaint about its type.
using Setter = std::function<std::optional<std::string>(const toml::node&)>;

Setter Number(double* out, double scale = 1) {
  return [=](const toml::node& n) -> std::optional<std::string> {
    if (!n.is_number()) return "must be a number";
    *out = *n.value<double>() * scale;
    return std::nullopt;
  };
}

Setter Integer(uint64_t* out) {
  return [=](const toml::node& n) -> std::optional<std::string> {
    if (!n.is_integer() || *n.value<int64_t>() < 0) return "must be a non-negative integer";
    *out = static_cast<uint64_t>(*n.value<int64_t>());
    return std::nullopt;
  };
}

Setter SmallInteger(int* out) {
  return [=](const toml::node& n) -> std::optional<std::string> {
    if (!n.is_integer()) return "must be an integer";
    const int64_t v = *n.value<int64_t>();
    if (v < -1000000 || v > 1000000) return "is out of range";
    *out = static_cast<int>(v);
    return std::nullopt;
  };
}

template <typename Enum>
Setter OneOf(Enum* out, std::map<std::string, Enum> names) {
  return [=](const toml::node& n) -> std::optional<std::string> {
    std::string list;
    for (const auto& [name, value] : names) list += (list.empty() ? "" : ", ") + name;
    if (!n.is_string()) return "must be a string, one of: " + list;
    auto it = names.find(*n.value<std::string>());
    if (it == names.end()) return "must be one of: " + list;
    *out = it->second;
    return std::nullopt;
  };
}

using Schema = std::map<std::string, std::map<std::string, Setter>>;

Schema MakeSchema(Scenario* s) {
  policy::Config* p = &s->policy_config;
  return {
      {"run",
       {{"seed", Integer(&s->seed)},
        {"policy", OneOf(&s->policy, {{"none", PolicyKind::kNone},
                                      {"broker", PolicyKind::kBroker}})},
        {"tick_s", Number(&s->tick_s)},
        {"drain_limit_s", Number(&s->drain_limit_s)}}},
      {"topology",
       {{"machines", Integer(&s->machines)},
        {"hosts_per_tor", Integer(&s->hosts_per_tor)},
        {"link_gbit_s", Number(&s->link_bps, 1e9 / 8)},
        {"tor_oversubscription", Number(&s->tor_oversubscription)}}},
      {"background",
       {{"host_mean", Number(&s->host_mean)},
        {"host_stddev", Number(&s->host_stddev)},
        {"tor_mean", Number(&s->tor_mean)},
        {"tor_stddev", Number(&s->tor_stddev)}}},
      {"hotspots",
       {{"load_pct", Number(&s->load_pct)},
        {"duration_periods", SmallInteger(&s->duration_periods)},
        {"demand", Number(&s->hot_demand)},
        {"saturation", Number(&s->saturation)}}},
      {"vms",
       {{"disk_gb", Number(&s->disk_bytes, 1e9)},
        {"write_mb_s", Number(&s->write_bps, 1e6)},
        {"dirty_fraction", Number(&s->dirty_fraction)},
        {"vmm_time_s", Number(&s->vmm_time_s)}}},
      {"tasks",
       {{"count", Integer(&s->count)},
        {"interval_s", Number(&s->interval_s)},
        {"deadline_s", Number(&s->deadline_s)},
        {"important_pct", Number(&s->important_pct)}}},
      {"policy",
       {{"period_s", Number(&p->period_s)},
        {"danger_pct", Number(&p->danger_pct)},
        {"warning_pct", Number(&p->warning_pct)},
        {"increase_mb_s", Number(&p->increase_bps, 1e6)},
        {"quiet_periods", SmallInteger(&p->quiet_periods)},
        {"min_network_mb_s", Number(&p->min_network_bps, 1e6)},
        {"min_disk_mb_s", Number(&p->min_disk_bps, 1e6)},
        {"disk_target_pct", Number(&p->disk_target_pct)},
        {"congestion", OneOf(&s->congestion, {{"saturated", Congestion::kSaturated},
                                              {"sla", Congestion::kSla}})}}},
  };
}

// A check of one field: ok(value) or the complaint.
struct Check {
  const char* field;
  bool ok;
  const char* what;
};

}  // namespace

Status ValidateScenario(const Scenario& s) {
  const policy::Config& p = s.policy_config;
  auto finite = [](double v) { return std::isfinite(v); };
  const Check checks[] = {
      {"run.tick_s", finite(s.tick_s) && s.tick_s > 0, "must be > 0 seconds"},
      {"run.tick_s", !finite(p.period_s) || p.period_s <= 0 ||
                         std::fabs(std::round(p.period_s / s.tick_s) * s.tick_s - p.period_s) <
                             1e-9 * p.period_s,
       "must divide policy.period_s"},
      {"run.drain_limit_s", finite(s.drain_limit_s) && s.drain_limit_s >= 0, "must be >= 0"},
      {"topology.machines", s.machines >= 2 && s.machines <= (1ull << 32), "must be 2 .. 2^32"},
      {"topology.hosts_per_tor", s.hosts_per_tor >= 1, "must be >= 1"},
      {"topology.link_gbit_s", finite(s.link_bps) && s.link_bps > 0, "must be > 0"},
      {"topology.tor_oversubscription", finite(s.tor_oversubscription) &&
                                            s.tor_oversubscription > 0, "must be > 0"},
      {"background.host_mean", finite(s.host_mean) && s.host_mean >= 0 && s.host_mean <= 1,
       "must be a fraction of link capacity, 0 .. 1"},
      {"background.host_stddev", finite(s.host_stddev) && s.host_stddev >= 0, "must be >= 0"},
      {"background.tor_mean", finite(s.tor_mean) && s.tor_mean >= 0 && s.tor_mean <= 1,
       "must be a fraction of link capacity, 0 .. 1"},
      {"background.tor_stddev", finite(s.tor_stddev) && s.tor_stddev >= 0, "must be >= 0"},
      {"hotspots.load_pct", finite(s.load_pct) && s.load_pct >= 0 && s.load_pct <= 100,
       "must be a percentage, 0 .. 100"},
      {"hotspots.duration_periods", s.duration_periods >= 1, "must be >= 1"},
      {"hotspots.demand", finite(s.hot_demand) && s.hot_demand >= 0 && s.hot_demand <= 1,
       "must be a fraction of link capacity, 0 .. 1"},
      {"hotspots.saturation", finite(s.saturation) && s.saturation > 0 && s.saturation <= 1,
       "must be a fraction of link capacity, > 0 and <= 1"},
      {"vms.disk_gb", finite(s.disk_bytes) && s.disk_bytes > 0, "must be > 0"},
      {"vms.write_mb_s", finite(s.write_bps) && s.write_bps >= 0, "must be >= 0"},
      {"vms.dirty_fraction", finite(s.dirty_fraction) && s.dirty_fraction >= 0 &&
                                 s.dirty_fraction <= 1, "must be 0 .. 1"},
      {"vms.vmm_time_s", finite(s.vmm_time_s) && s.vmm_time_s >= 0, "must be >= 0"},
      {"tasks.count", s.count >= 1 && s.count <= 100000000, "must be 1 .. 10^8"},
      {"tasks.interval_s", finite(s.interval_s) && s.interval_s >= 0, "must be >= 0"},
      {"tasks.deadline_s", finite(s.deadline_s) && s.deadline_s > 0, "must be > 0"},
      {"tasks.important_pct", finite(s.important_pct) && s.important_pct >= 0 &&
                                  s.important_pct <= 100, "must be a percentage, 0 .. 100"},
      {"policy.period_s", finite(p.period_s) && p.period_s > 0, "must be > 0"},
      {"policy.danger_pct", finite(p.danger_pct) && p.danger_pct > 100, "must be > 100"},
      {"policy.warning_pct", finite(p.warning_pct) && p.warning_pct > p.danger_pct,
       "must be > policy.danger_pct"},
      {"policy.increase_mb_s", finite(p.increase_bps) && p.increase_bps > 0, "must be > 0"},
      {"policy.quiet_periods", p.quiet_periods >= 0, "must be >= 0"},
      {"policy.min_network_mb_s", finite(p.min_network_bps) && p.min_network_bps >= 1000,
       "must be >= 0.001 (1 KB/s)"},
      {"policy.min_disk_mb_s", finite(p.min_disk_bps) && p.min_disk_bps >= 1000,
       "must be >= 0.001 (1 KB/s)"},
      {"policy.disk_target_pct", finite(p.disk_target_pct) && p.disk_target_pct >= 100,
       "must be >= 100"},
  };
  for (const Check& c : checks) {
    if (!c.ok) return Bad("scenario", c.field, c.what);
  }
  // Guard: the library's own rules must agree with the checks above.
  return policy::ValidateConfig(p);
}

Result<Scenario> ParseScenario(const std::string& toml_text, const std::string& source_name) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << "line " << e.source().begin.line << ", column " << e.source().begin.column;
    return Bad(source_name, where.str(), std::string(e.description()));
  }
  Scenario s;
  Schema schema = MakeSchema(&s);
  for (const auto& [table_key, table_node] : root) {
    const std::string table(table_key.str());
    auto known_table = schema.find(table);
    if (known_table == schema.end()) return Bad(source_name, table, "unknown table");
    if (!table_node.is_table()) return Bad(source_name, table, "must be a table ([" + table + "])");
    for (const auto& [key, node] : *table_node.as_table()) {
      const std::string field = table + "." + std::string(key.str());
      auto setter = known_table->second.find(std::string(key.str()));
      if (setter == known_table->second.end()) return Bad(source_name, field, "unknown key");
      if (auto complaint = setter->second(node)) return Bad(source_name, field, *complaint);
    }
  }
  Status valid = ValidateScenario(s);
  if (!valid.ok()) {
    Error e = valid.error();
    // "scenario: field: what" -> "<file>: field: what"
    if (e.message.rfind("scenario: ", 0) == 0) e.message = source_name + e.message.substr(8);
    return e;
  }
  return s;
}

Result<Scenario> LoadScenario(const std::string& path) {
  std::ifstream in(path);
  if (!in) return MakeError(errc::kNotFound, path + ": cannot open scenario file");
  std::ostringstream text;
  text << in.rdbuf();
  return ParseScenario(text.str(), path);
}

const char* ToString(PolicyKind kind) { return kind == PolicyKind::kNone ? "none" : "broker"; }

const char* ToString(Congestion c) {
  return c == Congestion::kSaturated ? "saturated" : "sla";
}

}  // namespace migratefs::sim
