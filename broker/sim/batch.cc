#include "broker/sim/batch.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <toml++/toml.h>

#include <nlohmann/json.hpp>

#include "broker/policy/batch_strategy.h"
#include "broker/policy/rate_allocation.h"
#include "broker/policy/reservation.h"

namespace migratefs::sim {

namespace {

constexpr double kMB = 1e6;

Error Bad(const std::string& source, const std::string& field, const std::string& what) {
  return MakeError(errc::kInvalidArgument, source + ": " + field + ": " + what);
}

// Reads `key` of `table` into *out (scaled); complains about types; records the key.
struct Reader {
  const toml::table& table;
  std::string prefix;
  std::string source;
  std::vector<std::string> seen;
  std::optional<Error> error;

  void Num(const char* key, double* out, double scale = 1) {
    seen.push_back(key);
    const toml::node* n = table.get(key);
    if (!n || error) return;
    if (!n->is_number()) {
      error = Bad(source, prefix + key, "must be a number");
      return;
    }
    *out = *n->value<double>() * scale;
  }
  void Int(const char* key, int* out) {
    seen.push_back(key);
    const toml::node* n = table.get(key);
    if (!n || error) return;
    if (!n->is_integer()) {
      error = Bad(source, prefix + key, "must be an integer");
      return;
    }
    *out = static_cast<int>(std::clamp<int64_t>(*n->value<int64_t>(), -1000000, 1000000));
  }
  void Str(const char* key, std::string* out) {
    seen.push_back(key);
    const toml::node* n = table.get(key);
    if (!n || error) return;
    if (!n->is_string()) {
      error = Bad(source, prefix + key, "must be a string");
      return;
    }
    *out = *n->value<std::string>();
  }
  void Unknown() {
    for (const auto& [k, v] : table) {
      std::string key(k.str());
      if (!error && std::find(seen.begin(), seen.end(), key) == seen.end()) {
        error = Bad(source, prefix + key, "is not a known field");
      }
    }
  }
};

}  // namespace

Result<BatchScenario> ParseBatchScenario(const std::string& text, const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream m;
    m << source << ":" << e.source().begin.line << ": " << e.description();
    return MakeError(errc::kInvalidArgument, m.str());
  }
  BatchScenario s;
  for (const auto& [k, v] : root) {
    std::string key(k.str());
    if (key != "link" && key != "run" && key != "vm") return Bad(source, key, "is not a known table");
  }
  if (const toml::table* link = root["link"].as_table()) {
    Reader r{*link, "link.", source, {}, {}};
    r.Num("capacity_mb_s", &s.capacity_bps, kMB);
    r.Num("workload_mb_s", &s.workload_bps, kMB);
    r.Num("workload_min_mb_s", &s.workload_min_bps, kMB);
    r.Num("workload_max_mb_s", &s.workload_max_bps, kMB);
    r.Unknown();
    if (r.error) return *r.error;
  }
  if (const toml::table* run = root["run"].as_table()) {
    Reader r{*run, "run.", source, {}, {}};
    r.Int("rounds", &s.rounds);
    r.Num("stream_max_mb_s", &s.stream_max_bps, kMB);
    r.Num("tick_s", &s.tick_s);
    r.Num("period_s", &s.period_s);
    r.Num("time_limit_s", &s.time_limit_s);
    r.Str("strategy", &s.strategy);
    r.Str("allocation", &s.allocation);
    r.seen.push_back("resplit");
    if (const toml::node* n = run->get("resplit"); n && !r.error) {
      if (!n->is_boolean()) r.error = Bad(source, "run.resplit", "must be true or false");
      else s.resplit = n->as_boolean()->get();
    }
    r.Unknown();
    if (r.error) return *r.error;
  }
  const toml::array* vms = root["vm"].as_array();
  if (!vms || vms->empty()) return Bad(source, "vm", "at least one [[vm]]");
  for (size_t i = 0; i < vms->size(); ++i) {
    const toml::table* t = vms->get(i)->as_table();
    std::string prefix = "vm[" + std::to_string(i) + "].";
    if (!t) return Bad(source, "vm", "must be an array of tables ([[vm]])");
    Reader r{*t, prefix, source, {}, {}};
    BatchVm vm;
    vm.name = "vm" + std::to_string(i + 1);
    std::string priority = "medium";
    r.Str("name", &vm.name);
    r.Num("size_mb", &vm.size_bytes, kMB);
    r.Num("dirty_mb_s", &vm.dirty_bps, kMB);
    r.Num("ram_mb", &vm.ram_bytes, kMB);
    r.Str("priority", &priority);
    r.Unknown();
    if (r.error) return *r.error;
    auto cls = policy::ParsePriorityClass(priority, prefix + "priority");
    if (!cls) return Bad(source, prefix + "priority", "must be \"high\", \"medium\" or \"low\"");
    vm.cls = cls.value();
    s.vms.push_back(vm);
  }
  if (auto v = ValidateBatchScenario(s); !v) {
    return MakeError(errc::kInvalidArgument, source + ": " + v.error().message);
  }
  return s;
}

Result<BatchScenario> LoadBatchScenario(const std::string& path) {
  std::ifstream in(path);
  if (!in) return MakeError(errc::kInvalidArgument, path + ": cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  return ParseBatchScenario(text.str(), path);
}

Status ValidateBatchScenario(const BatchScenario& s) {
  auto bad = [](const std::string& field, const std::string& what) {
    return MakeError(errc::kInvalidArgument, field + ": " + what);
  };
  if (!(s.capacity_bps > 0) || !std::isfinite(s.capacity_bps)) return bad("link.capacity_mb_s", "must be > 0");
  if (!(s.workload_bps >= 0)) return bad("link.workload_mb_s", "must be >= 0");
  policy::LinkReservation r{s.capacity_bps, s.workload_min_bps, s.workload_max_bps, 0};
  if (auto v = policy::ValidateReservation(r); !v) {
    std::string m = v.error().message;
    if (m.find("workload_min") != std::string::npos) return bad("link.workload_min_mb_s", m);
    return bad("link.workload_max_mb_s", m);
  }
  if (s.rounds < 1 || s.rounds > policy::kMaxRounds) return bad("run.rounds", "must be 1 .. 100");
  if (!(s.stream_max_bps >= 0)) return bad("run.stream_max_mb_s", "must be >= 0 (0 = none)");
  if (!(s.tick_s > 0) || s.tick_s > 10) return bad("run.tick_s", "must be in (0, 10]");
  if (!(s.time_limit_s > 0)) return bad("run.time_limit_s", "must be > 0");
  if (!(s.period_s >= 0) || !std::isfinite(s.period_s)) return bad("run.period_s", "must be >= 0 (0 = on events only)");
  if (s.strategy != "auto" && s.strategy != "gang" && s.strategy != "serial")
    return bad("run.strategy", "must be auto, gang or serial");
  if (s.allocation != "optimal" && s.allocation != "equal") return bad("run.allocation", "must be optimal or equal");
  if (s.vms.empty()) return bad("vm", "at least one [[vm]]");
  for (size_t i = 0; i < s.vms.size(); ++i) {
    const BatchVm& v = s.vms[i];
    std::string p = "vm[" + std::to_string(i) + "].";
    if (!(v.size_bytes > 0) || !std::isfinite(v.size_bytes)) return bad(p + "size_mb", "must be > 0");
    if (!(v.dirty_bps >= 0) || !std::isfinite(v.dirty_bps)) return bad(p + "dirty_mb_s", "must be >= 0");
    if (!(v.ram_bytes >= 0) || !std::isfinite(v.ram_bytes)) return bad(p + "ram_mb", "must be >= 0");
  }
  return OkStatus();
}

namespace {

struct VmState {
  bool started = false, phase3 = false, done = false;
  int round = 0;
  double left = 0, dirtied = 0;
  double rate = 0;
  BatchVmResult result;
};

// The rates of the running migrations: class reservation, then within each class
// equal shares (max-min under stream_max) or seed 000's optimal rates.
void Share(const BatchScenario& s, std::vector<VmState>& st, const std::vector<size_t>& active) {
  const double inf = policy::ClassClaim::kInfinityBps;
  std::vector<policy::ClassClaim> claims;
  for (size_t j : active) claims.push_back({s.vms[j].cls, s.stream_max_bps > 0 ? s.stream_max_bps : inf});
  policy::LinkReservation r{s.capacity_bps, s.workload_min_bps, s.workload_max_bps, 0};
  policy::ClassShares shares = policy::ReserveBandwidth(r, s.workload_bps, claims);
  for (size_t k = 0; k < active.size(); ++k) st[active[k]].rate = shares.ceiling_bps[k];
  if (s.allocation != "optimal") return;
  for (policy::PriorityClass cls : {policy::PriorityClass::kHigh, policy::PriorityClass::kMedium,
                                    policy::PriorityClass::kLow}) {
    std::vector<size_t> members;
    double total = 0;
    int min_round = s.rounds;
    for (size_t k = 0; k < active.size(); ++k) {
      if (s.vms[active[k]].cls != cls) continue;
      members.push_back(active[k]);
      total += shares.ceiling_bps[k];
      min_round = std::min(min_round, st[active[k]].round);
    }
    if (members.size() < 2 || total <= 0) continue;
    policy::RateProblem p;
    p.capacity_bps = total;
    p.rounds = std::max(1, s.rounds - min_round);
    for (size_t j : members) {
      p.size_bytes.push_back(st[j].left + st[j].dirtied);
      p.dirty_bps.push_back(s.vms[j].dirty_bps);
    }
    auto a = policy::AllocateRates(p);
    if (!a) continue;  // infeasible (sum D >= pool): keep the equal shares
    for (size_t m = 0; m < members.size(); ++m) {
      double rate = a.value().rates_bps[m];
      if (s.stream_max_bps > 0) rate = std::min(rate, s.stream_max_bps);
      st[members[m]].rate = rate;
    }
  }
}

}  // namespace

BatchResults SimulateBatch(const BatchScenario& s) {
  BatchResults out;
  out.allocation = s.allocation;
  out.resplit = s.resplit;
  std::vector<policy::BatchTask> tasks;
  for (const BatchVm& v : s.vms) tasks.push_back({v.name, v.cls, v.size_bytes});
  policy::BatchStrategy plan;
  if (s.strategy == "auto") {
    plan = policy::ChooseBatchStrategy(tasks, s.workload_bps / s.capacity_bps);
    out.reason = plan.reason;
  } else {
    std::vector<policy::BatchTask> all = tasks;
    for (auto& t : all) t.cls = policy::PriorityClass::kLow;
    policy::BatchStrategy order = policy::ChooseBatchStrategy(all, 1.0);
    std::vector<std::string> chain = order.serial.empty() ? order.gang : order.serial;
    if (s.strategy == "gang") {
      plan.gang = chain;
    } else {
      plan.serial = chain;
    }
    out.reason = "forced: " + s.strategy;
  }
  out.strategy = plan.serial.empty() ? "gang" : plan.gang.empty() ? "serial" : "mixed";
  std::map<std::string, size_t> index;
  for (size_t j = 0; j < s.vms.size(); ++j) index[s.vms[j].name] = j;

  std::vector<VmState> st(s.vms.size());
  auto start = [&](size_t j, double t) {
    st[j].started = true;
    st[j].left = s.vms[j].size_bytes;
    st[j].result.name = s.vms[j].name;
    st[j].result.start_s = t;
  };
  for (const std::string& vm : plan.gang) start(index[vm], 0);
  size_t next_in_chain = 0;
  if (!plan.serial.empty()) start(index[plan.serial[next_in_chain++]], 0);

  double t = 0;
  bool changed = true;
  double workload_min = s.workload_bps;
  const double dt = s.tick_s;
  double next_period = s.period_s;
  for (;;) {
    if (s.resplit && s.period_s > 0 && t + 1e-9 >= next_period) {
      changed = true;
      next_period += s.period_s;
    }
    std::vector<size_t> active;
    for (size_t j = 0; j < st.size(); ++j) {
      if (st[j].started && !st[j].done) active.push_back(j);
    }
    if (active.empty() && next_in_chain >= plan.serial.size()) break;
    if (t >= s.time_limit_s) break;
    if (changed) {
      if (s.resplit) {
        Share(s, st, active);
      } else {
        // Seed 000's model: only migrations that just started get a rate, solved
        // among the newcomers over what the running ones leave.
        std::vector<size_t> fresh;
        double busy = 0;
        for (size_t j : active) {
          if (st[j].rate > 0) busy += st[j].rate; else fresh.push_back(j);
        }
        if (!fresh.empty()) {
          BatchScenario rest = s;
          rest.capacity_bps = std::max(1.0, s.capacity_bps - busy);
          Share(rest, st, fresh);
        }
      }
    }
    changed = false;
    double used = 0;
    for (size_t j : active) used += st[j].rate;
    workload_min = std::min(workload_min, std::min(s.workload_bps, std::max(0.0, s.capacity_bps - used)));
    bool chain_ended = false;
    for (size_t j : active) {
      VmState& v = st[j];
      const BatchVm& vm = s.vms[j];
      double sent = 0;
      if (!v.phase3) {
        sent = std::min(v.left, v.rate * dt);
        v.left -= sent;
        v.dirtied = std::min(vm.size_bytes, v.dirtied + vm.dirty_bps * dt);
        if (v.left <= 0) {
          ++v.round;
          if (v.round >= s.rounds) {
            v.phase3 = true;
            v.result.phase3_s = t + dt;
            v.left = v.dirtied + vm.ram_bytes;
          } else {
            v.left = v.dirtied;
          }
          v.dirtied = 0;
        }
      } else {
        // Mirrored writes share the rate; the VM's writes are slowed to at most half
        // of it (synchronous mirroring), so the backlog always drains.
        double drain = v.rate - std::min(vm.dirty_bps, v.rate / 2);
        sent = std::min(v.left, v.rate * dt);
        v.left -= drain * dt;
        if (v.left <= 0) {
          v.done = true;
          v.result.end_s = t + dt;
          v.result.downtime_s = v.result.end_s - v.result.phase3_s;
          changed = true;
          if (std::find(plan.serial.begin(), plan.serial.end(), vm.name) != plan.serial.end()) chain_ended = true;
        }
      }
      v.result.bytes_sent += sent;
      out.bytes_moved += sent;
    }
    t += dt;
    if (chain_ended && next_in_chain < plan.serial.size()) {
      start(index[plan.serial[next_in_chain++]], t);
      changed = true;
    }
  }
  out.workload_min_bps = workload_min;
  for (size_t j = 0; j < st.size(); ++j) {
    BatchVmResult r = st[j].result;
    r.name = s.vms[j].name;
    if (!st[j].done) {
      out.all_finished = false;
      r.end_s = -1;
    } else {
      out.makespan_s = std::max(out.makespan_s, r.end_s);
      out.sum_completion_s += r.end_s;
      out.total_downtime_s += r.downtime_s;
      out.max_downtime_s = std::max(out.max_downtime_s, r.downtime_s);
    }
    out.vms.push_back(r);
  }
  return out;
}

std::string BatchToJson(const BatchResults& r) {
  nlohmann::json vms = nlohmann::json::array();
  for (const BatchVmResult& v : r.vms) {
    vms.push_back({{"name", v.name}, {"start_s", v.start_s}, {"phase3_s", v.phase3_s}, {"end_s", v.end_s},
                   {"downtime_s", v.downtime_s}, {"bytes_sent", v.bytes_sent}});
  }
  nlohmann::json j = {{"strategy", r.strategy},
                      {"allocation", r.allocation},
                      {"reason", r.reason},
                      {"makespan_s", r.makespan_s},
                      {"sum_completion_s", r.sum_completion_s},
                      {"total_downtime_s", r.total_downtime_s},
                      {"max_downtime_s", r.max_downtime_s},
                      {"bytes_moved", r.bytes_moved},
                      {"workload_min_mb_s", r.workload_min_bps / kMB},
                      {"all_finished", r.all_finished},
                      {"resplit", r.resplit},
                      {"vms", vms}};
  return j.dump();
}

std::string BatchToText(const BatchResults& r) {
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(2);
  o << "strategy " << r.strategy << ", allocation " << r.allocation << " (" << r.reason << ")\n";
  o << "makespan " << r.makespan_s << " s, sum of completion times " << r.sum_completion_s
    << " s, total downtime (phase 3) " << r.total_downtime_s << " s, max " << r.max_downtime_s << " s\n";
  o << "workload min " << r.workload_min_bps / kMB << " MB/s, bytes moved " << r.bytes_moved / kMB << " MB"
    << (r.all_finished ? "" : ", NOT all finished") << "\n";
  for (const BatchVmResult& v : r.vms) {
    o << "  " << v.name << ": start " << v.start_s << "  phase 3 " << v.phase3_s << "  end " << v.end_s
      << "  downtime " << v.downtime_s << "\n";
  }
  return o.str();
}

}  // namespace migratefs::sim
