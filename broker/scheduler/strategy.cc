#include "broker/scheduler/strategy.h"

#include <algorithm>
#include <set>

namespace migratefs::scheduler {

using nlohmann::json;

double BatchUtilization(const Batch& batch, const std::map<std::string, json>& status) {
  double worst = -1;
  for (const std::string& host : batch.sources) {
    auto it = status.find(host);
    if (it == status.end() || !it->second.contains("links") || !it->second["links"].is_array()) continue;
    for (const json& link : it->second["links"]) {
      std::string section = link.value("section", "");
      double capacity = link.value("capacity_kbps", 0.0);
      if (capacity <= 0 || !link.value("readable", false)) continue;
      if (!section.empty() && !std::binary_search(batch.sections.begin(), batch.sections.end(), section)) continue;
      double busiest = std::max(link.value("tx_kbps", 0.0), link.value("rx_kbps", 0.0));
      worst = std::max(worst, busiest / capacity);
    }
  }
  return worst;
}

void ApplyStrategies(Plan* plan, const Topology& topology, const std::map<size_t, double>& utilization,
                     StrategyMode mode, const policy::ContentionThresholds& thresholds) {
  plan->after.clear();
  plan->strategies = json::array();
  std::map<std::string, const broker::TaskSpec*> spec_of;
  for (const broker::TaskSpec& s : plan->specs) spec_of[s.vm] = &s;
  std::set<std::string> chained;
  for (size_t b = 0; b < plan->batches.size(); ++b) {
    const Batch& batch = plan->batches[b];
    std::vector<policy::BatchTask> tasks;
    for (const std::string& vm : batch.vms) {
      tasks.push_back({vm, spec_of[vm]->EffectiveClass(), plan->size_bytes[vm]});
    }
    double u = utilization.count(b) ? utilization.at(b) : -1;
    policy::BatchStrategy s = policy::ChooseBatchStrategy(tasks, u, thresholds);
    if (mode != StrategyMode::kAuto) {
      // Forced: every task in parallel, or every task in one chain (classes first,
      // then size, as the automatic order).
      std::vector<policy::BatchTask> all = tasks;
      for (auto& t : all) t.cls = policy::PriorityClass::kLow;
      policy::BatchStrategy order = policy::ChooseBatchStrategy(all, 1.0, thresholds);
      std::vector<std::string> chain = order.serial.empty() ? order.gang : order.serial;
      std::stable_sort(chain.begin(), chain.end(), [&](const std::string& x, const std::string& y) {
        return spec_of[x]->EffectiveClass() < spec_of[y]->EffectiveClass();
      });
      if (mode == StrategyMode::kGang) {
        s.gang = batch.vms;
        s.serial.clear();
        s.mode = "gang";
      } else {
        s.gang.clear();
        s.serial = chain;
        if (s.serial.size() == 1) std::swap(s.gang, s.serial);
        s.mode = s.serial.empty() ? "gang" : "serial";
      }
      s.reason = std::string("forced by --strategy ") + (mode == StrategyMode::kGang ? "gang" : "serial");
    }
    for (size_t k = 1; k < s.serial.size(); ++k) plan->after[s.serial[k]] = s.serial[k - 1];
    chained.insert(s.serial.begin(), s.serial.end());
    plan->strategies.push_back({{"batch", batch.vms},
                                {"mode", s.mode},
                                {"gang", s.gang},
                                {"serial", s.serial},
                                {"utilization", s.utilization < 0 ? json(nullptr) : json(s.utilization)},
                                {"contention", policy::ToString(s.contention)},
                                {"reason", s.reason}});
  }
  // Section budgets: equal shares among the tasks that run on a section at once.
  for (broker::TaskSpec& spec : plan->specs) spec.max_kbps = 0;
  for (const auto& [section, kbps] : topology.section_budgets()) {
    auto users = plan->users.find(section);
    if (users == plan->users.end()) continue;
    size_t concurrent = 0;
    bool chain = false;
    for (const std::string& vm : users->second) {
      if (chained.count(vm)) chain = true; else ++concurrent;
    }
    concurrent += chain ? 1 : 0;
    double share = kbps / static_cast<double>(std::max<size_t>(1, concurrent));
    for (broker::TaskSpec& spec : plan->specs) {
      if (std::find(spec.path.begin(), spec.path.end(), section) == spec.path.end()) continue;
      spec.max_kbps = spec.max_kbps > 0 ? std::min(spec.max_kbps, share) : share;
    }
  }
}

}  // namespace migratefs::scheduler
