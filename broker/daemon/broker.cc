#include "broker/daemon/broker.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace migratefs::broker {

namespace {

using nlohmann::json;

// A link without a section lies on every path from this host.
constexpr const char* kEverySection = "*";

bool IsTerminalPhase(const std::string& phase) {
  return phase == phase::kFailed || phase == phase::kCancelled || phase == phase::kFinished;
}

json NullIfZero(double v) { return v > 0 ? json(v) : json(nullptr); }

}  // namespace

struct Broker::Task {
  TaskSpec spec;
  std::string id;  // migratefs' migration id
  double started_s = 0;

  // Tick thread only.
  policy::TaskState policy;
  uint64_t applied_net_kbps = 0;   // what migratefs was last told (0 = none)
  uint64_t applied_disk_kbps = 0;
  double last_tick_s = 0;

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
    auto [it, inserted] = tasks_.emplace(spec.vm, task);
    if (!inserted) {
      return MakeError(errc::kBusy, "VM \"" + spec.vm + "\" is already a task of this broker");
    }
    task->state = "starting";
  }
  auto id = deps_.control->Start(spec.images, spec.target_address);
  std::lock_guard lock(mu_);
  if (!id) {
    tasks_.erase(spec.vm);
    spdlog::error("task {}: migratefs refused start: {}", spec.vm, id.error().message);
    return id.error();
  }
  task->id = id.value();
  task->started_s = task->last_tick_s = deps_.now();
  task->state = "running";
  spdlog::info("task {}: started as {} to {} ({} images), deadline in {:.1f} s{}", spec.vm,
               task->id, spec.target_address, spec.images.size(),
               spec.deadline_s - task->started_s, spec.important ? ", important" : "");
  return id.value();
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
    for (auto& [vm, task] : tasks_) {
      if (task->state == "running") running.push_back(task);
    }
  }
  for (auto& task : running) TickTask(*task, now, saturated);
}

void Broker::TickTask(Task& task, double now, const std::set<std::string>& saturated) {
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
    return;
  }
  auto net = deps_.control->QueryProgress(task.id, RateKind::kNetwork);
  auto disk = net ? deps_.control->QueryProgress(task.id, RateKind::kDisk) : net;
  if (!net || !disk) {
    spdlog::warn("task {}: query_progress: {} (limits left as they are)", vm,
                 (net ? disk : net).error().message);
    if (!completed.value()) return;
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
    if (task.state != "running") return;  // cancelled meanwhile
    if (completed.value()) {
      task.state = "completing";
      self = tasks_.at(vm);
    } else if (IsTerminalPhase(task.phase)) {
      task.state = "failed";
      task.error = "migratefs reports phase " + task.phase +
                   (net.value().pause_reason.empty() ? "" : ": " + net.value().pause_reason);
      spdlog::error("task {}: {}", vm, task.error);
      return;
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
    return;
  }
  const Progress& p = net.value();
  if (p.phase == phase::kPaused || p.phase == phase::kConnecting) {
    spdlog::info("task {}: {} {}; no decision this period", vm, p.phase, p.pause_reason);
    return;
  }
  // The first observation must cover a whole period of transfer (policy README, 17).
  if (now - task.started_s < 0.9 * config_.policy.period_s) return;

  policy::Observation obs;
  obs.now_s = now;
  obs.deadline_s = task.spec.deadline_s;
  obs.disk_left_bytes = static_cast<double>(p.bytes_left);
  obs.net_rate_bps = p.kbps * 1000;
  obs.dirty_rate_bps = p.dirty_kbps * 1000;
  obs.disk_write_rate_bps = disk.value().kbps * 1000;
  obs.vmm_time_s = config_.vmm_time_s;
  obs.important = task.spec.important;
  bool path_saturated = OnSaturatedPath(task, saturated);
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
  ApplyDecision(task, d);
  if (d.release_request) SendReleaseRequests(task, saturated);
}

void Broker::ApplyDecision(Task& task, const policy::Decision& d) {
  uint64_t net = policy::ToKbps(d.network_limit_bps.value_or(0));
  uint64_t disk = policy::ToKbps(d.disk_limit_bps.value_or(0));
  // Only changes are sent: migratefs keeps a limit until told otherwise.
  auto apply = [&](const char* what, uint64_t want, uint64_t* applied, auto set) {
    if (want == *applied) return;
    if (auto s = set(task.id, want); s) {
      spdlog::info("task {}: {} limit {} -> {} KB/s (slack {:.2f})", task.spec.vm, what, *applied, want, d.slack);
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
