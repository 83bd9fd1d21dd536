// Seed 000's allocation between the brokers that share a saturated section (issue 11,
// item 2; README "Shared-section allocation"): each broker sends its tasks' report
// (op rate_report) to the others of the section, and once every one of them reported
// within 2 periods, all compute the same rates and each sets its own tasks' limits.
#include "broker/daemon/broker.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "broker/daemon/broker_task.h"

namespace migratefs::broker {

using namespace broker_internal;  // the helpers of broker_task.h
using nlohmann::json;

void Broker::ReceiveRateReport(const std::string& from, const std::string& section,
                               std::vector<policy::SharedTask> tasks) {
  double now = deps_.now();
  for (policy::SharedTask& t : tasks) t.host = from;
  std::lock_guard lock(mu_);
  rate_reports_[section][from] = {now, std::move(tasks)};
}

void Broker::AllocateSharedSections(const std::vector<std::shared_ptr<Task>>& active,
                                    const std::set<std::string>& saturated, double now,
                                    const std::map<std::string, double>& ceilings) {
  // Our tasks per saturated section that other brokers share too.
  std::map<std::string, std::vector<std::shared_ptr<Task>>> ours;
  std::map<std::string, std::set<std::string>> peers;
  for (const auto& task : active) {
    for (const std::string& section : task->spec.path) {
      // A saturated link without section is this host's own: the path's first section.
      bool hot = saturated.count(section) ||
                 (saturated.count(kEverySection) && section == task->spec.path.front());
      if (!hot) continue;
      auto sharing = task->spec.sharing.find(section);
      if (sharing == task->spec.sharing.end()) continue;
      ours[section].push_back(task);
      for (const std::string& h : sharing->second) {
        if (h != config_.host) peers[section].insert(h);
      }
    }
  }
  std::map<std::string, double> rate;  // vm -> the smallest allocated rate over its sections
  std::map<std::string, std::string> by;
  for (auto& [section, tasks] : ours) {
    std::vector<policy::SharedTask> mine;
    for (const auto& t : tasks) {
      bool danger = InDanger(*t);
      mine.push_back({config_.host, t->spec.vm, static_cast<double>(t->bytes_left), t->dirty_kbps * 1000,
                      t->net_kbps * 1000, danger});
      if (auto c = ceilings.find(t->spec.vm); c != ceilings.end() && c->second < kNoCeiling)
        mine.back().ceiling_bps = std::max(c->second, config_.policy.min_network_bps);
    }
    json report = json::array();
    for (const auto& t : mine) {
      json entry = {{"vm", t.vm}, {"bytes_left", t.bytes_left}, {"dirty_kbps", t.dirty_bps / 1000},
                    {"net_kbps", t.net_bps / 1000}, {"in_danger", t.in_danger}};
      if (std::isfinite(t.ceiling_bps)) entry["ceiling_kbps"] = t.ceiling_bps / 1000;
      report.push_back(entry);
    }
    for (const std::string& host : peers[section]) {
      deps_.peers->Send(host, {{"op", kRateReportOp}, {"section", section}, {"tasks", report}});
    }
    // Every broker of the section must have reported within 2 periods; else Alg. 2.
    std::vector<policy::SharedTask> all = mine;
    std::string missing;
    {
      std::lock_guard lock(mu_);
      for (const std::string& host : peers[section]) {
        auto& reports = rate_reports_[section];
        auto it = reports.find(host);
        if (it == reports.end() || now - it->second.at_s > 2 * config_.policy.period_s) {
          missing += (missing.empty() ? "" : ", ") + host;
          continue;
        }
        all.insert(all.end(), it->second.tasks.begin(), it->second.tasks.end());
      }
    }
    if (!missing.empty()) {
      spdlog::info("section {}: no fresh rate report from {}; Alg. 2 alone", section, missing);
      continue;
    }
    auto a = policy::AllocateSection(all, config_.allocation_rounds);
    if (!a) {
      spdlog::info("section {}: no shared allocation ({}); Alg. 2 alone", section, a.error().message);
      continue;
    }
    spdlog::debug("section {}: {}", section, a.value().reason);
    for (const auto& t : mine) {
      auto it = a.value().rate_bps.find(policy::SharedKey(config_.host, t.vm));
      if (it == a.value().rate_bps.end()) continue;  // in danger: Alg. 1 decides
      if (!rate.count(t.vm) || it->second < rate[t.vm]) {
        rate[t.vm] = it->second;
        by[t.vm] = section;
      }
    }
  }
  for (const auto& task : active) {
    auto it = rate.find(task->spec.vm);
    std::lock_guard lock(mu_);
    task->allocation = it == rate.end() ? "" : by[task->spec.vm];
    if (it == rate.end()) continue;
    // The allocated rate replaces Alg. 2's halving; after the section clears, Alg. 2
    // recovers from it as after a reduction (hold, +C, drop).
    task->policy.network_limit_bps = std::max(it->second, config_.policy.min_network_bps);
    task->policy.last_action = policy::NetAction::kReduce;
  }
}

}  // namespace migratefs::broker
