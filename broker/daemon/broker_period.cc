// The period loop: Tick() observes every running task, runs Alg. 1 (policy::Decide,
// unchanged), lets the shared-section allocation and the ceilings adjust the result,
// and pushes the limits that changed to migratefs (ApplyLimits).
#include "broker/daemon/broker.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <iterator>

#include "broker/daemon/broker_task.h"

namespace migratefs::broker {

using namespace broker_internal;  // the helpers of broker_task.h

void Broker::Tick(const std::vector<LinkSample>& links) {
  double now = deps_.now();
  std::set<std::string> saturated;
  std::vector<std::shared_ptr<Task>> running;
  {
    std::lock_guard lock(mu_);
    links_ = links;
    for (auto it = sla_until_.begin(); it != sla_until_.end();) {
      it = it->second <= now ? sla_until_.erase(it) : std::next(it);
    }
    saturated = SaturatedSections(now);
  }
  StartQueued();
  {
    std::lock_guard lock(mu_);
    for (auto& [vm, task] : tasks_) {
      if (task->state == "running") running.push_back(task);
    }
  }
  std::vector<std::shared_ptr<Task>> active;
  auto yielders = Yielders(running, saturated);
  for (auto& task : running) {
    if (TickTask(*task, now, saturated, yielders)) active.push_back(task);
  }
  std::map<std::string, double> ceilings = Ceilings(active);
  if (config_.rate_allocation) AllocateSharedSections(active, saturated, now, ceilings);
  for (auto& task : active) ApplyLimits(*task, ceilings.at(task->spec.vm));
  for (auto& task : active) {
    if (task->release_pending) SendReleaseRequests(*task, saturated);
    task->release_pending = false;
  }
  StartQueued();  // slots freed by tasks that completed or failed this period
}

bool Broker::TickTask(Task& task, double now, const std::set<std::string>& saturated,
                      const std::map<std::string, policy::PriorityClass>& yielders) {
  const std::string& vm = task.spec.vm;
  // Time under a limit is charged for the interval that just ended.
  double interval = std::max(0.0, now - task.last_tick_s);
  task.last_tick_s = now;
  {
    std::lock_guard lock(mu_);
    if (task.applied_net_kbps) task.network_limited_s += interval;
    if (task.applied_disk_kbps) task.disk_limited_s += interval;
    if (task.applied_net_kbps || task.applied_disk_kbps) task.limited_s += interval;
  }

  auto completed = deps_.control->QueryCompletion(task.id);
  if (!completed) {
    spdlog::warn("task {}: query_completion: {} (limits left as they are)", vm,
                 completed.error().message);
    return false;
  }
  auto net = deps_.control->QueryProgress(task.id, RateKind::kNetwork);
  auto disk = net ? deps_.control->QueryProgress(task.id, RateKind::kDisk) : net;
  if (!net || !disk) {
    spdlog::warn("task {}: query_progress: {} (limits left as they are)", vm,
                 (net ? disk : net).error().message);
    if (!completed.value()) return false;
  }
  std::shared_ptr<Task> self;
  {
    std::lock_guard lock(mu_);
    if (net && disk) {
      const Progress& p = net.value();
      task.phase = p.phase;
      task.bytes_total = p.bytes_total;
      task.bytes_sent = p.bytes_sent;
      task.bytes_left = p.bytes_left;
      task.net_kbps = p.kbps;
      task.dirty_kbps = p.dirty_kbps;
      task.disk_kbps = disk.value().kbps;
      ++task.periods;
    }
    if (task.state != "running") return false;  // cancelled meanwhile
    if (completed.value()) {
      task.state = "completing";
      self = tasks_.at(vm);
    } else if (IsTerminalPhase(task.phase)) {
      task.state = "failed";
      task.error = "migratefs reports phase " + task.phase +
                   (net.value().pause_reason.empty() ? "" : ": " + net.value().pause_reason);
      spdlog::error("task {}: {}", vm, task.error);
      return false;
    }
  }
  if (self) {
    spdlog::info("task {}: every disk is in phase 3 (completed)", vm);
    if (deps_.inline_completion) {
      Complete(self);
    } else {
      std::lock_guard lock(mu_);
      completions_.emplace_back([this, self] { Complete(self); });
    }
    return false;
  }
  const Progress& p = net.value();
  if (p.phase == phase::kPaused || p.phase == phase::kConnecting) {
    spdlog::info("task {}: {} {}; no decision this period", vm, p.phase, p.pause_reason);
    return false;
  }
  // The first observation must cover a whole period of transfer (policy README, 17);
  // until then only the class reservation and the caps apply.
  if (now - task.started_s < 0.9 * config_.policy.period_s) return true;

  policy::Observation obs;
  obs.now_s = now;
  obs.deadline_s = task.spec.deadline_s;
  obs.disk_left_bytes = static_cast<double>(p.bytes_left);
  obs.net_rate_bps = p.kbps * 1000;
  obs.dirty_rate_bps = p.dirty_kbps * 1000;
  obs.disk_write_rate_bps = disk.value().kbps * 1000;
  obs.vmm_time_s = config_.vmm_time_s;
  // Class high (or the old important flag) is Alg. 1's "important".
  obs.important = task.spec.EffectiveClass() == policy::PriorityClass::kHigh;
  bool path_saturated = SeesCongestion(task, saturated, yielders);
  bool released;
  {
    std::lock_guard lock(mu_);
    released = task.release_hold_until_s > now;
  }
  obs.backoff = path_saturated || released;
  policy::Decision d = policy::Decide(config_.policy, obs, &task.policy);
  {
    std::lock_guard lock(mu_);
    task.slack = d.slack;
    task.time_left_s = d.time_left_s;
    if (obs.backoff) ++task.backoff_periods;
  }
  for (const std::string& reason : d.reasons) spdlog::debug("task {}: {}", vm, reason);
  task.release_pending = d.release_request;
  return true;
}

void Broker::ApplyLimits(Task& task, double ceiling_bps) {
  // The complete desired state: Alg. 1/2's limit under the ceiling, floored (0 = none).
  double net_bps = task.policy.network_limit_bps.value_or(kNoCeiling);
  if (ceiling_bps < net_bps) net_bps = std::max(ceiling_bps, config_.policy.min_network_bps);
  uint64_t net = net_bps >= kNoCeiling ? 0 : policy::ToKbps(net_bps);
  uint64_t disk = policy::ToKbps(task.policy.disk_limit_bps.value_or(0));
  // Only changes are sent: migratefs keeps a limit until told otherwise.
  auto apply = [&](const char* what, uint64_t want, uint64_t* applied, auto set) {
    if (want == *applied) return;
    if (auto s = set(task.id, want); s) {
      spdlog::info("task {}: {} limit {} -> {} KB/s (slack {:.2f})", task.spec.vm, what, *applied, want,
                   task.slack);
      *applied = want;
    } else {
      spdlog::warn("task {}: set_{}_limit {}: {}", task.spec.vm, what, want, s.error().message);
    }
  };
  apply("network", net, &task.applied_net_kbps,
        [&](const std::string& id, uint64_t kbps) { return deps_.control->SetNetworkLimit(id, kbps); });
  apply("disk", disk, &task.applied_disk_kbps,
        [&](const std::string& id, uint64_t kbps) { return deps_.control->SetDiskLimit(id, kbps); });
  std::lock_guard lock(mu_);
  task.ceiling_bps = ceiling_bps;
  task.shown_net_kbps = task.applied_net_kbps;
  task.shown_disk_kbps = task.applied_disk_kbps;
}

}  // namespace migratefs::broker
