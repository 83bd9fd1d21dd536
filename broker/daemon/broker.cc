#include "broker/daemon/broker.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "broker/policy/fair_share.h"
#include "broker/policy/reservation.h"

namespace migratefs::broker {

namespace {

using nlohmann::json;

// A link without a section lies on every path from this host.
constexpr const char* kEverySection = "*";

bool IsTerminalPhase(const std::string& phase) {
  return phase == phase::kFailed || phase == phase::kCancelled || phase == phase::kFinished;
}

json NullIfZero(double v) { return v > 0 ? json(v) : json(nullptr); }

constexpr double kNoCeiling = policy::ClassClaim::kInfinityBps;

bool HoldsSlot(const std::string& state) {
  return state == "starting" || state == "running" || state == "completing";
}

}  // namespace

struct Broker::Task {
  TaskSpec spec;
  std::string id;  // migratefs' migration id
  double started_s = 0;
  uint64_t sequence = 0;  // submission order (queue tie-break)

  // Tick thread only.
  policy::TaskState policy;
  uint64_t applied_net_kbps = 0;   // what migratefs was last told (0 = none)
  uint64_t applied_disk_kbps = 0;
  double last_tick_s = 0;
  bool release_pending = false;    // Decide() asked for a release this period

  // Guarded by Broker::mu_.
  std::string state = "running";   // running, completing, finished, failed, cancelled
  std::string error;
  double release_hold_until_s = 0;
  std::string phase;
  uint64_t bytes_total = 0, bytes_sent = 0, bytes_left = 0;
  double net_kbps = 0, dirty_kbps = 0, disk_kbps = 0;
  double network_limited_s = 0, disk_limited_s = 0, limited_s = 0;
  double slack = -1, time_left_s = -1;
  uint64_t shown_net_kbps = 0, shown_disk_kbps = 0;
  std::string allocation;           // section whose seed-000 rate set the limit ("" = none)
  double ceiling_bps = kNoCeiling;  // class reservation / budget / cap of the last period
  double queued_s = 0;              // when it was queued (0 = never)
  int periods = 0, backoff_periods = 0, release_requests_sent = 0;
  std::string hook_command;
  double hook_started_s = 0, hook_ended_s = 0, finished_s = 0;
  int hook_exit_code = -1;
  bool hook_ran = false;
};

Broker::Broker(BrokerConfig config, BrokerDeps deps)
    : config_(std::move(config)), deps_(std::move(deps)) {}

Broker::~Broker() { WaitForCompletions(); }

void Broker::WaitForCompletions() {
  std::vector<std::thread> running;
  {
    std::lock_guard lock(mu_);
    running.swap(completions_);
  }
  for (std::thread& t : running) t.join();
}

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
  auto id = deps_.control->Start(spec.images, spec.target_address, marking);
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
  task.started_s = task.last_tick_s = deps_.now();
  task.state = "running";
  spdlog::info("task {}: started as {} to {} ({} images), deadline in {:.1f} s, priority {}{}", spec.vm,
               task.id, spec.target_address, spec.images.size(), spec.deadline_s - task.started_s,
               policy::ToString(spec.EffectiveClass()), spec.important ? " (important)" : "");
  return OkStatus();
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

Status Broker::Cancel(const std::string& vm) {
  std::shared_ptr<Task> task;
  {
    std::lock_guard lock(mu_);
    auto it = tasks_.find(vm);
    if (it == tasks_.end()) return MakeError(errc::kUnknownId, "no task \"" + vm + "\"");
    task = it->second;
    if (task->state != "running") {
      return MakeError(errc::kWrongState, "task \"" + vm + "\" is " + task->state);
    }
    task->state = "cancelled";
  }
  auto s = deps_.control->Cancel(task->id);
  if (!s) spdlog::warn("task {}: cancel: {}", vm, s.error().message);
  return s;
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
  if (config_.rate_allocation) AllocateSharedSections(active, saturated, now);
  std::map<std::string, double> ceilings = Ceilings(active);
  for (auto& task : active) ApplyLimits(*task, ceilings.at(task->spec.vm));
  for (auto& task : active) {
    if (task->release_pending) SendReleaseRequests(*task, saturated);
    task->release_pending = false;
  }
  StartQueued();  // slots freed by tasks that completed or failed this period
}

std::map<std::string, policy::PriorityClass> Broker::Yielders(
    const std::vector<std::shared_ptr<Task>>& running, const std::set<std::string>& saturated) const {
  std::map<std::string, policy::PriorityClass> least;
  uint64_t floor_kbps = policy::ToKbps(config_.policy.min_network_bps);
  for (const auto& task : running) {
    // Tick thread: applied_net_kbps is ours to read.
    bool can_yield = task->applied_net_kbps == 0 || task->applied_net_kbps > floor_kbps;
    // A task in danger ignores congestion (Alg. 1): it will not yield.
    bool in_danger = task->slack >= 0 && task->slack * 100 < config_.policy.danger_pct;
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

void Broker::ReceiveRateReport(const std::string& from, const std::string& section,
                               std::vector<policy::SharedTask> tasks) {
  double now = deps_.now();
  for (policy::SharedTask& t : tasks) t.host = from;
  std::lock_guard lock(mu_);
  rate_reports_[section][from] = {now, std::move(tasks)};
}

void Broker::AllocateSharedSections(const std::vector<std::shared_ptr<Task>>& active,
                                    const std::set<std::string>& saturated, double now) {
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
      bool danger = t->slack >= 0 && t->slack * 100 < config_.policy.danger_pct;
      mine.push_back({config_.host, t->spec.vm, static_cast<double>(t->bytes_left), t->dirty_kbps * 1000,
                      t->net_kbps * 1000, danger});
    }
    json report = json::array();
    for (const auto& t : mine) {
      report.push_back({{"vm", t.vm}, {"bytes_left", t.bytes_left}, {"dirty_kbps", t.dirty_bps / 1000},
                        {"net_kbps", t.net_bps / 1000}, {"in_danger", t.in_danger}});
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
      if (task->slack >= 0 && task->slack * 100 < config_.policy.danger_pct) claim.cls = policy::PriorityClass::kHigh;
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

void Broker::Complete(std::shared_ptr<Task> task) {
  const std::string& vm = task->spec.vm;
  // Phase 3 mirrors every write synchronously: the disk limit, there only to make the
  // copy converge, is lifted; the network limit stays (it protects other tenants).
  if (task->applied_disk_kbps != 0) {
    if (deps_.control->SetDiskLimit(task->id, 0)) task->applied_disk_kbps = 0;
  }
  std::string command;
  if (!config_.hypervisor_command.empty()) {
    auto expanded = ExpandCommand(config_.hypervisor_command, {{"vm", vm},
                                                               {"source", task->spec.source},
                                                               {"target", task->spec.target}});
    command = expanded ? expanded.value() : "";
  }
  {
    std::lock_guard lock(mu_);
    if (task->hook_ran) return;  // never twice
    task->hook_ran = true;
    task->hook_command = command;
    task->hook_started_s = deps_.now();
    task->shown_disk_kbps = task->applied_disk_kbps;
  }
  if (!command.empty()) {
    spdlog::info("task {}: running hypervisor command: {}", vm, command);
    CommandOutcome outcome = deps_.run_command(command);
    std::lock_guard lock(mu_);
    task->hook_ended_s = deps_.now();
    task->hook_exit_code = outcome.exit_code;
    if (outcome.exit_code != 0) {
      // The VM still runs here: finishing would fence its disks. Leave it mirrored.
      task->state = "failed";
      task->error = outcome.timed_out
                        ? "hypervisor command timed out; migration left in phase 3, not finished"
                        : "hypervisor command exited " + std::to_string(outcome.exit_code) +
                              "; migration left in phase 3, not finished: " +
                              outcome.output.substr(0, 500);
      spdlog::error("task {}: {}", vm, task->error);
      return;
    }
  }
  Status finished = deps_.control->Finish(task->id);
  for (int attempt = 1; !finished && finished.error().code == errc::kPeerUnreachable && attempt < 3;
       ++attempt) {
    finished = deps_.control->Finish(task->id);  // idempotent
  }
  std::lock_guard lock(mu_);
  task->finished_s = deps_.now();
  if (!finished) {
    task->state = "failed";
    task->error = "finish: " + finished.error().message;
    spdlog::error("task {}: {}", vm, task->error);
    return;
  }
  task->state = "finished";
  spdlog::info("task {}: finished after {:.1f} s, deadline {}", vm,
               task->finished_s - task->started_s,
               task->finished_s <= task->spec.deadline_s ? "met" : "MISSED");
}

json Broker::ReportOf(const Task& t) const {
  json report = {
      {"vm", t.spec.vm},
      {"id", t.id},
      {"state", t.state},
      {"error", t.error},
      {"source", t.spec.source},
      {"target", t.spec.target},
      {"important", t.spec.important},
      {"priority", policy::ToString(t.spec.EffectiveClass())},
      {"deadline", t.spec.deadline_s},
      {"started", t.started_s},
      {"finished", NullIfZero(t.finished_s)},
      {"phase", t.phase},
      {"bytes_total", t.bytes_total},
      {"bytes_sent", t.bytes_sent},
      {"bytes_left", t.bytes_left},
      {"network_kbps", t.net_kbps},
      {"dirty_kbps", t.dirty_kbps},
      {"disk_kbps", t.disk_kbps},
      {"network_limit_kbps", t.shown_net_kbps},
      {"ceiling_kbps", t.ceiling_bps >= kNoCeiling ? json(nullptr) : json(policy::ToKbps(t.ceiling_bps))},
      {"queued_s", NullIfZero(t.queued_s)},
      {"allocation_section", t.allocation},
      {"disk_limit_kbps", t.shown_disk_kbps},
      {"network_limited_s", t.network_limited_s},
      {"disk_limited_s", t.disk_limited_s},
      {"limited_s", t.limited_s},
      {"slack", t.slack},
      {"time_left_s", t.time_left_s},
      {"periods", t.periods},
      {"backoff_periods", t.backoff_periods},
      {"release_requests_sent", t.release_requests_sent},
      {"hypervisor", {{"ran", t.hook_ran},
                      {"command", t.hook_command},
                      {"started", NullIfZero(t.hook_started_s)},
                      {"ended", NullIfZero(t.hook_ended_s)},
                      {"exit_code", t.hook_exit_code}}},
  };
  if (t.state == "finished") {
    report["duration_s"] = t.finished_s - t.started_s;
    report["met_deadline"] = t.finished_s <= t.spec.deadline_s;
  } else if (t.state == "failed" || t.state == "cancelled") {
    report["met_deadline"] = false;
  }
  return report;
}

Result<json> Broker::TaskReport(const std::string& vm) const {
  std::lock_guard lock(mu_);
  auto it = tasks_.find(vm);
  if (it == tasks_.end()) return MakeError(errc::kUnknownId, "no task \"" + vm + "\"");
  return ReportOf(*it->second);
}

json Broker::StatusReport() const {
  std::lock_guard lock(mu_);
  double now = deps_.now();
  json links = json::array();
  for (const LinkSample& l : links_) {
    links.push_back({{"iface", l.iface},
                     {"section", l.section},
                     {"capacity_kbps", l.capacity_kbps},
                     {"tx_kbps", l.tx_kbps},
                     {"rx_kbps", l.rx_kbps},
                     {"readable", l.readable},
                     {"saturated", l.saturated}});
  }
  json sla = json::object();
  for (const auto& [section, until] : sla_until_) {
    if (until > now) sla[section] = until;
  }
  json tasks = json::array();
  for (const auto& [vm, task] : tasks_) tasks.push_back(ReportOf(*task));
  auto saturated = SaturatedSections(now);
  return {{"host", config_.host},
          {"time", now},
          {"saturated_sections", std::vector<std::string>(saturated.begin(), saturated.end())},
          {"sla_failures", sla},
          {"links", links},
          {"tasks", tasks}};
}

}  // namespace migratefs::broker
