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

class Broker {
 public:
  Broker(BrokerConfig config, BrokerDeps deps);
  ~Broker();  // waits for running completions

  // Issues `start` to the local migratefs and adopts the task. bad_request when the
  // VM is already a task here or this host is not its source; the daemon's error when
  // it refuses.
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

  Status Cancel(const std::string& vm);

  // The record of one task (README "Task report"), or unknown_id.
  Result<nlohmann::json> TaskReport(const std::string& vm) const;
  nlohmann::json StatusReport() const;  // host, saturated sections, links, every task

  // Waits until no completion thread runs (tests, shutdown).
  void WaitForCompletions();

 private:
  struct Task;
  void TickTask(Task& task, double now, const std::set<std::string>& saturated);
  void ApplyDecision(Task& task, const policy::Decision& d);
  void SendReleaseRequests(Task& task, const std::set<std::string>& saturated);
  void Complete(std::shared_ptr<Task> task);
  std::set<std::string> SaturatedSections(double now) const;  // mu_ held
  bool OnSaturatedPath(const Task& task, const std::set<std::string>& saturated) const;
  nlohmann::json ReportOf(const Task& task) const;             // mu_ held

  const BrokerConfig config_;
  BrokerDeps deps_;

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Task>> tasks_;      // by VM
  std::map<std::string, double> sla_until_;                 // section -> until (epoch s)
  std::vector<LinkSample> links_;                            // last sample
  std::vector<std::thread> completions_;
};

}  // namespace migratefs::broker
