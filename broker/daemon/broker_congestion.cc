// Congestion as the broker sees it: saturated sections (link samples and SLA-failure
// reports), release requests between brokers (Alg. 1's ask for bandwidth, and the
// hold they put on tasks that share the section) and seed 003's "low yields first".
#include "broker/daemon/broker.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "broker/daemon/broker_task.h"

namespace migratefs::broker {

using namespace broker_internal;  // the helpers of broker_task.h

Status Broker::ReportSlaFailure(const std::string& link, double until_s) {
  std::string section = link;
  for (const LinkConfig& l : config_.links) {
    if (l.iface == link) section = l.section.empty() ? kEverySection : l.section;
  }
  std::lock_guard lock(mu_);
  double& until = sla_until_[section];
  until = std::max(until, until_s);
  spdlog::warn("SLA failure on {} until {:.1f} (in {:.1f} s)", link, until_s,
               until_s - deps_.now());
  return OkStatus();
}

void Broker::ReceiveRelease(const std::string& from, const std::vector<std::string>& sections,
                            const std::string& requester) {
  double until = deps_.now() + config_.ReleaseHoldSeconds();
  std::lock_guard lock(mu_);
  int held = 0;
  for (auto& [vm, task] : tasks_) {
    if (vm == requester && from == config_.host) continue;
    bool shares = sections.empty();
    for (const std::string& s : sections) {
      shares = shares || std::find(task->spec.path.begin(), task->spec.path.end(), s) !=
                             task->spec.path.end();
    }
    if (!shares || task->state != "running") continue;
    task->release_hold_until_s = std::max(task->release_hold_until_s, until);
    ++held;
  }
  spdlog::info("release request from {} (task {}) on {} section(s): {} task(s) back off", from,
               requester, sections.size(), held);
}

std::set<std::string> Broker::SaturatedSections(double now) const {
  std::set<std::string> saturated;
  for (const LinkSample& link : links_) {
    if (link.saturated) saturated.insert(link.section.empty() ? kEverySection : link.section);
  }
  for (const auto& [section, until] : sla_until_) {
    if (until > now) saturated.insert(section);
  }
  return saturated;
}

bool Broker::OnSaturatedPath(const Task& task, const std::set<std::string>& saturated) const {
  if (saturated.count(kEverySection)) return true;
  for (const std::string& s : task.spec.path) {
    if (saturated.count(s)) return true;
  }
  return false;
}

std::map<std::string, policy::PriorityClass> Broker::Yielders(
    const std::vector<std::shared_ptr<Task>>& running, const std::set<std::string>& saturated) const {
  std::map<std::string, policy::PriorityClass> least;
  uint64_t floor_kbps = policy::ToKbps(config_.policy.min_network_bps);
  for (const auto& task : running) {
    // Tick thread: applied_net_kbps is ours to read.
    bool can_yield = task->applied_net_kbps == 0 || task->applied_net_kbps > floor_kbps;
    // A task in danger ignores congestion (Alg. 1): it will not yield.
    bool in_danger = InDanger(*task);
    if (!can_yield || in_danger) continue;
    policy::PriorityClass c = task->spec.EffectiveClass();
    for (const std::string& s : saturated) {
      bool on = s == kEverySection ||
                std::find(task->spec.path.begin(), task->spec.path.end(), s) != task->spec.path.end();
      if (!on) continue;
      auto it = least.find(s);
      if (it == least.end() || c > it->second) least[s] = c;
    }
  }
  return least;
}

bool Broker::SeesCongestion(const Task& task, const std::set<std::string>& saturated,
                            const std::map<std::string, policy::PriorityClass>& yielders) const {
  policy::PriorityClass c = task.spec.EffectiveClass();
  auto counts = [&](const std::string& s) {
    auto it = yielders.find(s);
    return it == yielders.end() || !(it->second > c);  // nobody less urgent left to yield
  };
  if (saturated.count(kEverySection) && counts(kEverySection)) return true;
  for (const std::string& s : task.spec.path) {
    if (saturated.count(s) && counts(s)) return true;
  }
  return false;
}

void Broker::SendReleaseRequests(Task& task, const std::set<std::string>& saturated) {
  // Only brokers whose tasks share a *saturated* section of this path are asked.
  std::map<std::string, std::vector<std::string>> by_host;
  for (const std::string& section : task.spec.path) {
    if (!saturated.count(section) && !saturated.count(kEverySection)) continue;
    auto sharing = task.spec.sharing.find(section);
    if (sharing == task.spec.sharing.end()) continue;
    for (const std::string& host : sharing->second) by_host[host].push_back(section);
  }
  if (by_host.empty()) {
    spdlog::info("task {}: in danger; no saturated shared section, nobody to ask", task.spec.vm);
    return;
  }
  for (const auto& [host, sections] : by_host) {
    if (host == config_.host) {
      ReceiveRelease(config_.host, sections, task.spec.vm);
    } else {
      deps_.peers->Send(host, {{"op", kReleaseOp}, {"sections", sections}, {"task", task.spec.vm}});
    }
  }
  std::lock_guard lock(mu_);
  task.release_requests_sent += static_cast<int>(by_host.size());
}

}  // namespace migratefs::broker
