// The supervisor: a small process that keeps a mount alive across crashes and
// upgrades of the worker that serves it.
//
// How the mount outlives the worker: the worker is created with clone(CLONE_FILES),
// so it and the supervisor share one fd table. Every fd the worker opens (/dev/fuse
// and its clone fds, backing files, sockets) is also the supervisor's, and a SIGKILL
// of the worker closes none of them: the kernel keeps the FUSE connection, callers
// block instead of getting ENOTCONN, and the next worker finds every fd its
// RestartState names under the same number (restart_state.h). The supervisor itself
// does no I/O for the mount; it only waits.
//
// Who calls: main(), after daemonizing. Lifecycle:
//  - starts worker(state, ready_fd) in the clone; the worker writes one byte to
//    ready_fd once it serves;
//  - a worker that dies while the state says mounted is restarted at once (a crash
//    loop — five deaths in a row before serving — gives up: detach the mount, exit 1);
//  - a worker that exits with the mount gone (unmounted, or mounting failed) ends the
//    supervisor with the worker's status;
//  - SIGTERM/SIGINT are passed to the worker (a clean unmount follows);
//  - SIGHUP, or `migratefs --upgrade MNT` (a request on an abstract UNIX socket named
//    after MNT), upgrades: the worker is killed (a crash it survives by design), the
//    supervisor re-executes the binary now at its path with --resume-supervisor, and
//    the new supervisor starts a worker of the new binary that resumes the mount.
//  - If the supervisor itself dies, the worker is killed with it (PR_SET_PDEATHSIG):
//    the mount then dies as an unsupervised daemon's would.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "fs/restart_state.h"

namespace migratefs::fs {

struct SupervisorConfig {
  std::string mountpoint;         // absolute: names the upgrade socket
  std::string exe;                // binary to execute on upgrade
  std::vector<std::string> args;  // the command line to run it with (argv[1..])
  // Told the outcome of the first start (0: serving), then never again. report_fd
  // is the fd it writes to: no worker may close it before.
  std::function<void(int status)> report_first_start;
  int report_fd = -1;
};

// Runs in the clone: serves the mount described by `state` and returns an exit
// status. `ready_fd`: write one byte once serving.
using WorkerMain = std::function<int(RestartState* state, int ready_fd)>;

// Returns the supervisor's exit status. `state` is fresh, or the one an upgrading
// supervisor passed on (then `reply_fd`, if >= 0, is the --upgrade caller waiting
// for "ok").
int RunSupervisor(const SupervisorConfig& cfg, RestartState* state, int reply_fd, const WorkerMain& worker);

// `migratefs --upgrade MNT`: asks MNT's supervisor to upgrade and waits for the new
// worker. Returns 0 on success; prints what went wrong otherwise.
int RequestUpgrade(const std::string& mountpoint);

// Name of the abstract socket a supervisor of `mountpoint` listens on (no leading
// NUL), stable across versions: upgrades from one binary to the next depend on it.
std::string UpgradeSocketName(const std::string& mountpoint);

}  // namespace migratefs::fs
