// The broker's lifetime, cancellation and its reports (README "Task report").
// The rest of Broker lives beside it: broker_classes.cc (submission, the fleet-cap
// queue, class reservations and budgets), broker_period.cc (the period loop: observe,
// Alg. 1, apply limits), broker_congestion.cc (saturated sections, SLA failures,
// release requests, who yields), broker_allocation.cc (seed 000 between brokers),
// broker_completion.cc (hypervisor command, then finish).
#include "broker/daemon/broker.h"

#include <spdlog/spdlog.h>

#include "broker/daemon/broker_task.h"

namespace migratefs::broker {

using namespace broker_internal;  // the helpers of broker_task.h
using nlohmann::json;

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
