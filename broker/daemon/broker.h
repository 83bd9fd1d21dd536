// The broker's core: the migration tasks whose source is this host, Alg. 1 every
// period (policy::Decide, used unchanged), limits pushed to the local migratefs only
// when they change, congestion from link samples, SLA-failure reports and peers'
// release requests, and the completion sequence (hypervisor command once, then finish).
//
// No sockets and no clocks of its own: the control client, the peer sender, the clock
// and the command runner are injected (BrokerDeps), so tests drive it period by period.
//
// Threads: Tick() runs on one thread (the period loop). Submit, ReportSlaFailure,
// ReceiveRelease, Cancel and the report calls may come from any thread at any time.
// Control-socket calls are made without holding the broker's lock, so a slow migratefs
// never blocks a status query. Completion (hook + finish) runs on its own thread per
// task unless BrokerDeps::inline_completion is set (tests).
//
// Implementation, one part a file: broker.cc (lifetime, Cancel, reports),
// broker_classes.cc (Submit, the max_parallel queue, class reservations and budgets),
// broker_period.cc (Tick: observe, Alg. 1, apply limits), broker_congestion.cc
// (saturated sections, SLA failures, release requests, who yields),
// broker_allocation.cc (seed 000 between brokers), broker_completion.cc (hook, then
// finish); broker_task.h is the per-task record they share.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "broker/daemon/broker_config.h"
#include "broker/daemon/control_client.h"
#include "broker/daemon/hypervisor_command.h"
#include "broker/daemon/link_monitor.h"
#include "broker/daemon/task_spec.h"
#include "broker/policy/shared_allocation.h"

namespace migratefs::broker {

// Fire-and-forget messages to other brokers, by topology host name. Must not block
// for long: a vanished peer costs the sender a timeout on its own thread, not ours.
class PeerSender {
 public:
  virtual ~PeerSender() = default;
  virtual void Send(const std::string& host, nlohmann::json body) = 0;
};

struct BrokerDeps {
  ControlClient* control = nullptr;
  PeerSender* peers = nullptr;
  std::function<double()> now;                                     // seconds since the epoch
  std::function<CommandOutcome(const std::string&)> run_command;   // the hypervisor hook
  bool inline_completion = false;  // run hook + finish on the Tick() thread (tests)
};

// The release-request op between brokers (body fields: sections, task).
inline constexpr const char* kReleaseOp = "release_bandwidth";
// The shared-section report between brokers (body fields: section, tasks:[{vm,
// bytes_left, dirty_kbps, net_kbps, in_danger}]). README "Shared-section allocation".
inline constexpr const char* kRateReportOp = "rate_report";

class Broker {
 public:
  Broker(BrokerConfig config, BrokerDeps deps);
  ~Broker();  // waits for running completions

  // Issues `start` to the local migratefs (with the marking of the task's class) and
  // adopts the task. With `max_parallel` migrations already running the task is queued
  // instead (state "queued", id "" until it starts in a later Tick()). bad_request
  // when this host is not its source, busy when the VM is already a task here; the
  // daemon's error when it refuses.
  Result<std::string> Submit(const TaskSpec& spec);

  // One period for every running task. `links` is this period's link sample.
  void Tick(const std::vector<LinkSample>& links);

  // Monitoring says `link` (a section name, or a configured iface) fails its SLA
  // until `until_s` (seconds since the epoch).
  Status ReportSlaFailure(const std::string& link, double until_s);

  // A peer (or a local task) in danger asks tasks on `sections` to release bandwidth:
  // they see backoff for ReleaseHoldSeconds(). Empty `sections` = every task here.
  // `requester` (the asking VM) never backs off for its own request.
  void ReceiveRelease(const std::string& from, const std::vector<std::string>& sections,
                      const std::string& requester);

  // A peer's tasks on a saturated section this period (op rate_report). Kept for
  // 2 periods; every broker on the section computes the same allocation from them.
  void ReceiveRateReport(const std::string& from, const std::string& section,
                         std::vector<policy::SharedTask> tasks);

  Status Cancel(const std::string& vm);

  // The record of one task (README "Task report"), or unknown_id.
  Result<nlohmann::json> TaskReport(const std::string& vm) const;
  nlohmann::json StatusReport() const;  // host, saturated sections, links, every task

  // Waits until no completion thread runs (tests, shutdown).
  void WaitForCompletions();

 private:
  struct Task;  // broker_task.h

  // broker_classes.cc: submission, the fleet-cap queue, reservations and budgets.
  Status StartTask(Task& task);                       // mu_ not held
  // The network limit a task starts under (kbps, 0 = none): its ceiling from Ceilings
  // with the tasks already running, so its first bytes obey its class's reservation
  // instead of flooding the link until the next period.
  uint64_t InitialNetworkKbps(const Task& task) const;
  // Whether a task counts as in danger (slack below danger_pct) for what the broker
  // decides around Alg. 1: class promotion, yielding, the shared allocation. A rate
  // that read 0 while the broker holds the task at a limit says nothing about its
  // deadline: its time left is then taken at that limit. Callers hold mu_ or are the
  // tick thread.
  bool InDanger(const Task& task) const;
  void StartQueued();                                 // fleet cap: start what fits
  int Running() const;                                // mu_ held: tasks holding a slot
  // Class reservations, host budget and fleet caps: the most each task may send
  // (bytes/s; kNoCeiling = none), for the tasks that get limits this period.
  std::map<std::string, double> Ceilings(const std::vector<std::shared_ptr<Task>>& active) const;

  // broker_period.cc: the period loop (Tick thread).
  // Observes one task and runs Alg. 1; true when the task is copying and gets limits.
  bool TickTask(Task& task, double now, const std::set<std::string>& saturated,
                const std::map<std::string, policy::PriorityClass>& yielders);
  void ApplyLimits(Task& task, double ceiling_bps);

  // broker_allocation.cc: seed 000 on every saturated shared section: sends our
  // report, and when every broker of the section reported, sets the network limits of
  // our tasks there. `ceilings` (Ceilings()) cap each task's share, ours and the
  // peers' (their reports carry theirs).
  void AllocateSharedSections(const std::vector<std::shared_ptr<Task>>& active,
                              const std::set<std::string>& saturated, double now,
                              const std::map<std::string, double>& ceilings);

  // broker_congestion.cc: saturated sections, release requests, who yields.
  void SendReleaseRequests(Task& task, const std::set<std::string>& saturated);
  std::set<std::string> SaturatedSections(double now) const;  // mu_ held
  bool OnSaturatedPath(const Task& task, const std::set<std::string>& saturated) const;
  // Seed 003's "low yields first": per saturated section, the least urgent class of
  // our tasks there that can still yield (limit above the floor). A task sees a
  // section's congestion only when no task of a less urgent class there can yield.
  std::map<std::string, policy::PriorityClass> Yielders(const std::vector<std::shared_ptr<Task>>& running,
                                                        const std::set<std::string>& saturated) const;
  bool SeesCongestion(const Task& task, const std::set<std::string>& saturated,
                      const std::map<std::string, policy::PriorityClass>& yielders) const;

  // broker_completion.cc: hook once, then finish (own thread, or inline in tests).
  void Complete(std::shared_ptr<Task> task);

  // broker.cc
  nlohmann::json ReportOf(const Task& task) const;             // mu_ held

  const BrokerConfig config_;
  BrokerDeps deps_;

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Task>> tasks_;      // by VM
  std::map<std::string, double> sla_until_;                 // section -> until (epoch s)
  std::vector<LinkSample> links_;                            // last sample
  std::vector<std::thread> completions_;
  uint64_t submissions_ = 0;                                 // submission sequence
  struct RateReport {
    double at_s = 0;
    std::vector<policy::SharedTask> tasks;
  };
  std::map<std::string, std::map<std::string, RateReport>> rate_reports_;  // section -> host
};

}  // namespace migratefs::broker
