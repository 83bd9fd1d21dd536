// Priority classes, the fleet-cap queue and the budgets (issue 11, items 3 and 5):
// Submit/StartTask (start with the class's marking, or queue under max_parallel),
// StartQueued (by class, then deadline, then submission order) and Ceilings (seed
// 003's class reservations per host link, the per-task cap, the host budget).
#include "broker/daemon/broker.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <tuple>

#include "broker/daemon/broker_task.h"
#include "broker/policy/fair_share.h"
#include "broker/policy/reservation.h"

namespace migratefs::broker {

using namespace broker_internal;  // the helpers of broker_task.h

Result<std::string> Broker::Submit(const TaskSpec& spec) {
  if (spec.source != config_.host) {
    return MakeError(errc::kBadRequest, "task \"" + spec.vm + "\" has source \"" + spec.source +
                                            "\" but this broker is \"" + config_.host + "\"");
  }
  auto task = std::make_shared<Task>();
  task->spec = spec;
  {
    std::lock_guard lock(mu_);
    if (tasks_.count(spec.vm)) {
      return MakeError(errc::kBusy, "VM \"" + spec.vm + "\" is already a task of this broker");
    }
    task->sequence = ++submissions_;
    bool full = config_.max_parallel > 0 && Running() >= config_.max_parallel;
    bool waiting = std::any_of(tasks_.begin(), tasks_.end(),
                               [](const auto& t) { return t.second->state == "queued"; });
    tasks_.emplace(spec.vm, task);
    if (full || waiting) {
      task->state = "queued";
      task->queued_s = deps_.now();
      spdlog::info("task {}: queued ({} of max_parallel {} running)", spec.vm, Running(),
                   config_.max_parallel);
      return std::string();
    }
    task->state = "starting";
  }
  if (auto s = StartTask(*task); !s) return s.error();
  return task->id;
}

Status Broker::StartTask(Task& task) {
  const TaskSpec& spec = task.spec;
  Marking marking;
  if (auto it = config_.marking.find(spec.EffectiveClass()); it != config_.marking.end()) {
    marking = it->second;
  }
  const uint64_t initial_kbps = InitialNetworkKbps(task);
  auto id = deps_.control->Start(spec.images, spec.target_address, marking, initial_kbps);
  std::lock_guard lock(mu_);
  if (!id) {
    spdlog::error("task {}: migratefs refused start: {}", spec.vm, id.error().message);
    if (task.queued_s > 0) {  // the scheduler already holds it as submitted: keep the record
      task.state = "failed";
      task.error = "start (after queueing): " + id.error().message;
    } else {
      tasks_.erase(spec.vm);
    }
    return id.error();
  }
  task.id = id.value();
  task.applied_net_kbps = task.shown_net_kbps = initial_kbps;
  task.started_s = task.last_tick_s = deps_.now();
  task.state = "running";
  spdlog::info("task {}: started as {} to {} ({} images), deadline in {:.1f} s, priority {}{}", spec.vm,
               task.id, spec.target_address, spec.images.size(), spec.deadline_s - task.started_s,
               policy::ToString(spec.EffectiveClass()), spec.important ? " (important)" : "");
  return OkStatus();
}

uint64_t Broker::InitialNetworkKbps(const Task& task) const {
  std::vector<std::shared_ptr<Task>> active;
  std::shared_ptr<Task> self;
  {
    std::lock_guard lock(mu_);
    for (const auto& [vm, t] : tasks_) {
      if (t.get() == &task) {
        self = t;
      } else if (t->state == "running") {
        active.push_back(t);
      }
    }
  }
  if (!self) return 0;
  active.push_back(self);
  const double ceiling = Ceilings(active).at(task.spec.vm);
  if (ceiling >= kNoCeiling) return 0;
  return policy::ToKbps(std::max(ceiling, config_.policy.min_network_bps));
}

bool Broker::InDanger(const Task& task) const {
  if (task.slack < 0 || task.slack * 100 >= config_.policy.danger_pct) return false;
  if (task.net_kbps > 0 || task.applied_net_kbps == 0) return true;
  const double at_limit = policy::Slack(
      task.spec.deadline_s - deps_.now(),
      policy::TimeLeft(static_cast<double>(task.bytes_left), task.applied_net_kbps * 1000.0, task.dirty_kbps * 1000,
                       config_.vmm_time_s));
  return at_limit * 100 < config_.policy.danger_pct;
}

int Broker::Running() const {
  int n = 0;
  for (const auto& [vm, task] : tasks_) n += HoldsSlot(task->state) ? 1 : 0;
  return n;
}

void Broker::StartQueued() {
  for (;;) {
    std::shared_ptr<Task> next;
    {
      std::lock_guard lock(mu_);
      if (config_.max_parallel > 0 && Running() >= config_.max_parallel) return;
      for (auto& [vm, task] : tasks_) {
        if (task->state != "queued") continue;
        auto key = [](const Task& t) {
          return std::make_tuple(t.spec.EffectiveClass(), t.spec.deadline_s, t.sequence);
        };
        if (!next || key(*task) < key(*next)) next = task;
      }
      if (!next) return;
      next->state = "starting";
    }
    (void)StartTask(*next);  // a refusal removes the task and is logged
  }
}

std::map<std::string, double> Broker::Ceilings(const std::vector<std::shared_ptr<Task>>& active) const {
  std::map<std::string, double> ceiling;
  for (const auto& task : active) {
    ceiling[task->spec.vm] = task->spec.max_kbps > 0 ? task->spec.max_kbps * 1000 : kNoCeiling;
  }
  std::lock_guard lock(mu_);
  // Seed 003's class reservations, per host link that has one.
  for (size_t li = 0; li < config_.links.size(); ++li) {
    const LinkConfig& link = config_.links[li];
    if (!link.has_reservation()) continue;
    std::vector<std::shared_ptr<Task>> on;
    double ours_bps = 0;
    for (const auto& task : active) {
      const auto& path = task->spec.path;
      if (link.section.empty() || std::find(path.begin(), path.end(), link.section) != path.end()) {
        on.push_back(task);
        ours_bps += task->net_kbps * 1000;
      }
    }
    if (on.empty()) continue;
    policy::LinkReservation r{link.capacity_kbps * 1000, link.workload_min_kbps * 1000,
                              link.workload_max_kbps * 1000, link.HeadroomKbps() * 1000};
    // The workload is the link's traffic minus our migrations'; unknown = at its max.
    double workload = r.workload_max_bps;
    for (const LinkSample& sample : links_) {
      if (sample.iface == link.iface && sample.readable && sample.tx_kbps > 0) {
        workload = std::max(0.0, sample.tx_kbps * 1000 - ours_bps);
      }
    }
    std::vector<policy::ClassClaim> claims;
    for (const auto& task : on) {
      policy::ClassClaim claim;
      claim.cls = task->spec.EffectiveClass();
      // Deadlines win (Alg. 1): a task in danger is served as high; the workload's
      // lower limit still holds.
      if (InDanger(*task)) claim.cls = policy::PriorityClass::kHigh;
      claims.push_back(claim);
    }
    policy::ClassShares shares = policy::ReserveBandwidth(r, workload, claims);
    for (size_t k = 0; k < on.size(); ++k) {
      double& c = ceiling[on[k]->spec.vm];
      c = std::min(c, shares.ceiling_bps[k]);
    }
    for (const std::string& reason : shares.reasons) {
      spdlog::debug("link {}: workload {:.0f} KB/s: {}", link.iface, workload / 1000, reason);
    }
  }
  // The host's budget, split max-min fairly under the ceilings so far.
  if (config_.budget_kbps > 0 && !active.empty()) {
    std::vector<double> wants;
    for (const auto& task : active) wants.push_back(ceiling[task->spec.vm]);
    std::vector<double> shares = policy::WaterFill(config_.budget_kbps * 1000, wants);
    for (size_t k = 0; k < active.size(); ++k) ceiling[active[k]->spec.vm] = shares[k];
  }
  return ceiling;
}

}  // namespace migratefs::broker
