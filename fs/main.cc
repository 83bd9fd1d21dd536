// migratefs SRC MNT [-f] [-d] [-o opts]: the daemon.
//
// Supervised (the default): parse → daemonize → the supervisor (supervisor.h) starts
// a worker that mounts (Session::Mount) or takes a mount over (Session::Resume),
// starts the migration services, reports ready → the waiting parent exits with the
// outcome → serve → stop the services → unmount.
// Unsupervised (-o nosupervise): parse → mount → daemonize → services (their
// threads must be created after the fork) → report → serve → unmount.
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>

#include <cstdio>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

#include "fs/options.h"
#include "fs/session.h"
#include "fs/supervisor.h"
#include "migratefs/services.h"

namespace {

// fuse_daemonize() lets the parent exit 0 as soon as the child exists, before the
// services have started; mount(8) and scripts would then report success for a
// daemon that dies a moment later. Ours keeps the parent waiting until the child
// reports, and exits with the child's status. Returns the fd to report on (the
// child's side), or -1 in the foreground.
int Daemonize(bool foreground) {
  if (foreground) return -1;
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid > 0) {
    close(p[1]);
    char status = 1;
    if (read(p[0], &status, 1) != 1) status = 1;  // child died before reporting
    _exit(status);
  }
  close(p[0]);
  setsid();
  // Like any daemon, do not keep the caller's directory busy.
  if (chdir("/") != 0) perror("migratefs: chdir /");
  return p[1];
}

// Ends the parent's wait; from here on the daemon has no terminal.
void ReportStarted(int fd, int status) {
  if (fd < 0) return;
  char s = static_cast<char>(status);
  ssize_t n = write(fd, &s, 1);  // if the parent is gone there is no one to tell
  (void)n;
  close(fd);
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    if (null > 2) close(null);
  }
}

void UseStderrLog(bool debug) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("migratefs"));
  spdlog::set_level(debug ? spdlog::level::debug : spdlog::level::info);
}

void UseSyslog() {
  spdlog::drop_all();
  spdlog::set_default_logger(spdlog::syslog_logger_mt("migratefs", "migratefs", LOG_PID, LOG_DAEMON));
}

// Writes this process's PID to PATH (through a rename: readers never see half).
void WritePidfile(const std::string& path) {
  if (path.empty()) return;
  const std::string tmp = path + ".tmp";
  FILE* f = fopen(tmp.c_str(), "we");
  if (f == nullptr || fprintf(f, "%d\n", getpid()) < 0 || fclose(f) != 0 || rename(tmp.c_str(), path.c_str()) != 0) {
    spdlog::warn("pidfile {}: {}", path, strerror(errno));
  }
}

// Serves the mount until it ends: mounts it, or (state says mounted) takes it over
// from a dead worker. `ready_fd` (supervised) hears one byte once serving;
// `report_fd` (unsupervised, daemonized) hears the outcome. Returns the exit status.
int Serve(const migratefs::fs::CommandLine& cl, migratefs::fs::RestartState* state, int ready_fd, bool daemonize) {
  using migratefs::fs::Session;
  const bool resume = state != nullptr && state->header().mounted.load() != 0;
  // A SIGTERM between the mount and fuse_set_signal_handlers would kill us by its
  // default action and leave the mount behind, dead ("Transport endpoint is not
  // connected"; FsCli.ForegroundExitsZeroOnUnmountAndOnSigterm saw it). So the
  // terminating signals wait, blocked, until libfuse's handlers are in place.
  sigset_t term, old_mask;
  sigemptyset(&term);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&term, s);
  pthread_sigmask(SIG_BLOCK, &term, &old_mask);
  // Resume first of all: it closes every fd the state does not name.
  auto mounted = resume ? Session::Resume(cl, state) : Session::Mount(cl, state);
  if (!mounted) {
    fprintf(stderr, "migratefs: %s\n", mounted.error().message.c_str());
    return 1;
  }
  auto& session = *mounted.value();
  if (fuse_set_signal_handlers(session.raw()) != 0) {
    fprintf(stderr, "migratefs: cannot install signal handlers\n");
    if (!resume) session.Unmount();
    return 1;
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);  // a signal that came meanwhile is handled now
  int report_fd = daemonize ? Daemonize(cl.opts.foreground) : -1;

  // Service threads are created here, after any fork.
  const migratefs::MountOptions& opts = session.fs().options();
  auto services = migratefs::StartServices(opts, session.src_dirfd(), session.hooks(), state);
  if (!services) {
    fprintf(stderr, "migratefs: cannot start services: %s\n", services.error().message.c_str());
    // A worker taking over keeps the mount for the next attempt; a first start
    // leaves nothing behind.
    if (!resume) session.Unmount();
    ReportStarted(report_fd, 1);
    return 1;
  }
  WritePidfile(cl.pidfile);
  if (!cl.opts.foreground) UseSyslog();
  if (resume) {
    const auto& h = state->header();
    spdlog::warn("worker {} took {} over (start #{}; the previous worker ended with wait status {:#x})", getpid(),
                 opts.mountpoint, h.starts, static_cast<unsigned>(h.last_status));
  }
  ReportStarted(report_fd, 0);
  if (ready_fd >= 0 && write(ready_fd, "r", 1) != 1) spdlog::warn("cannot tell the supervisor: {}", strerror(errno));
  spdlog::info("serving {} at {}", opts.source, opts.mountpoint);
  int rc = session.Loop();
  services.value()->Stop();
  fuse_remove_signal_handlers(session.raw());
  session.Unmount();
  // libfuse reports a loop ended by SIGINT/SIGTERM/SIGHUP as that signal number: a
  // requested, clean shutdown.
  bool clean = rc == 0 || rc == SIGINT || rc == SIGTERM || rc == SIGHUP;
  if (clean) {
    spdlog::info("unmounted {}", opts.mountpoint);
  } else {
    spdlog::error("FUSE loop failed ({}); unmounted {}", rc, opts.mountpoint);
  }
  return clean ? 0 : 1;
}

std::string SelfPath() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "/proc/self/exe";
  return std::string(buf, static_cast<size_t>(n));
}

int RunSupervised(const migratefs::fs::CommandLine& cl, int argc, char** argv) {
  using namespace migratefs::fs;
  SupervisorConfig cfg;
  cfg.exe = SelfPath();  // resolved now: after a package upgrade the path names the new binary
  for (int i = 1; i < argc; i++) cfg.args.emplace_back(argv[i]);
  // Daemonizing changes to /: relative paths are resolved before.
  CommandLine abs = cl;
  char buf[PATH_MAX];
  if (realpath(cl.opts.source.c_str(), buf) != nullptr) abs.opts.source = buf;
  if (realpath(cl.opts.mountpoint.c_str(), buf) != nullptr) abs.opts.mountpoint = buf;
  cfg.mountpoint = abs.opts.mountpoint;
  auto worker = [&abs](RestartState* state, int ready_fd) { return Serve(abs, state, ready_fd, false); };
  if (cl.resume_state_fd >= 0) {  // re-executed by an upgrading supervisor
    auto state = RestartState::Adopt(cl.resume_state_fd);
    if (!state) {
      fprintf(stderr, "migratefs: upgrade: %s\n", state.error().message.c_str());
      return 1;
    }
    return RunSupervisor(cfg, state.value().get(), cl.resume_reply_fd, worker);
  }
  int report_fd = Daemonize(cl.opts.foreground);
  auto state = RestartState::Create();
  if (!state) {
    fprintf(stderr, "migratefs: %s\n", state.error().message.c_str());
    ReportStarted(report_fd, 1);
    return 1;
  }
  cfg.report_fd = report_fd;
  cfg.report_first_start = [report_fd](int status) { ReportStarted(report_fd, status); };
  return RunSupervisor(cfg, state.value().get(), -1, worker);
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = migratefs::fs::ParseCommandLine(argc, argv);
  if (!parsed) {
    fprintf(stderr, "migratefs: %s\n", parsed.error().message.c_str());
    return 2;
  }
  const migratefs::fs::CommandLine& cl = parsed.value();
  if (cl.help) {
    fputs(migratefs::fs::UsageText().c_str(), stdout);
    return 0;
  }
  if (cl.version) {
    printf("migratefs %s (libfuse %s)\n", MIGRATEFS_VERSION, fuse_pkgversion());
    return 0;
  }
  if (!cl.upgrade_mountpoint.empty()) return migratefs::fs::RequestUpgrade(cl.upgrade_mountpoint);
  UseStderrLog(cl.opts.debug);
  // The kernel has applied the caller's umask to every mode it sends us; ours must
  // not mask it a second time.
  umask(0);
  if (cl.supervise || cl.resume_state_fd >= 0) return RunSupervised(cl, argc, argv);
  return Serve(cl, nullptr, -1, true);
}
