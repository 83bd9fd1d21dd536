// migratefs SRC MNT [-f] [-d] [-o opts]: the daemon.
//
// Order matters: parse → open SRC and mount (Session::Mount) → daemonize → start the
// migration services (their threads must be created after the fork) → let the
// waiting parent exit with the outcome → serve → stop the services → unmount.
#include <fcntl.h>
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
  UseStderrLog(cl.opts.debug);
  // The kernel has applied the caller's umask to every mode it sends us; ours must
  // not mask it a second time.
  umask(0);

  auto mounted = migratefs::fs::Session::Mount(cl);
  if (!mounted) {
    fprintf(stderr, "migratefs: %s\n", mounted.error().message.c_str());
    return 1;
  }
  auto& session = *mounted.value();
  if (fuse_set_signal_handlers(session.raw()) != 0) {
    fprintf(stderr, "migratefs: cannot install signal handlers\n");
    return 1;
  }
  int report_fd = Daemonize(cl.opts.foreground);

  // Service threads are created here, after the fork.
  const migratefs::MountOptions& opts = session.fs().options();
  auto services = migratefs::StartServices(opts, session.src_dirfd(), session.hooks());
  if (!services) {
    fprintf(stderr, "migratefs: cannot start services: %s\n", services.error().message.c_str());
    session.Unmount();
    ReportStarted(report_fd, 1);
    return 1;
  }
  if (!cl.opts.foreground) UseSyslog();
  ReportStarted(report_fd, 0);
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
