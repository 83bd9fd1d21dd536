// The completion sequence of a task whose disks are all in phase 3: the disk limit
// lifted, the hypervisor command run once, then finish (retried while the peer is
// unreachable). Runs on its own thread, or inline on the Tick thread in tests.
#include "broker/daemon/broker.h"

#include <spdlog/spdlog.h>

#include "broker/daemon/broker_task.h"

namespace migratefs::broker {

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

}  // namespace migratefs::broker
