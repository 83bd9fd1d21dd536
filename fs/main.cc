// migratefs SRC MNT [-f] [-d] [-o opts]: the daemon.
//
// Order matters: parse → open SRC and mount (Session::Mount) → daemonize → start the
// migration services (their threads must be created after the fork) → serve → stop
// the services → unmount.
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
  // Always called: in the foreground it only changes to "/".
  if (fuse_daemonize(cl.opts.foreground ? 1 : 0) != 0) return 1;
  if (!cl.opts.foreground) UseSyslog();

  const migratefs::MountOptions& opts = session.fs().options();
  auto services = migratefs::StartServices(opts, session.src_dirfd(), session.hooks());
  if (!services) {
    spdlog::error("cannot start services: {} ({})", services.error().message, services.error().code);
    if (cl.opts.foreground) fprintf(stderr, "migratefs: %s\n", services.error().message.c_str());
    session.Unmount();
    return 1;
  }
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
