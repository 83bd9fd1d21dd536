// migratefs-broker --config FILE: one per host, beside the local migratefs. Runs Alg. 1
// for the migrations whose source is this host every `period` seconds, until SIGTERM
// or SIGINT. broker/daemon/README.md is the reference.
#include <signal.h>

#include <chrono>
#include <cstdio>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "broker/daemon/broker.h"
#include "broker/daemon/broker_config.h"
#include "broker/daemon/broker_server.h"
#include "broker/daemon/link_monitor.h"
#include "broker/daemon/peer_auth.h"
#include "broker/daemon/peer_sender.h"

namespace {

using namespace migratefs::broker;

double WallNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
double MonotonicNow() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Sleeps until `until` (steady seconds) or a termination signal; true on a signal.
bool WaitForSignal(const sigset_t& signals, double until) {
  for (;;) {
    double left = until - MonotonicNow();
    if (left <= 0) return false;
    timespec ts{static_cast<time_t>(left), static_cast<long>((left - static_cast<time_t>(left)) * 1e9)};
    int sig = ::sigtimedwait(&signals, nullptr, &ts);
    if (sig > 0) {
      spdlog::info("signal {}: stopping", sig);
      return true;
    }
  }
}

int Run(const std::string& config_path) {
  auto loaded = LoadBrokerConfig(config_path);
  if (!loaded) {
    std::fprintf(stderr, "migratefs-broker: %s\n", loaded.error().message.c_str());
    return 2;
  }
  const BrokerConfig& config = loaded.value();

  // Block the termination signals before any thread starts; the loop waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto timeout = Millis(static_cast<int64_t>(config.control_timeout_s * 1000));
  auto control = NewSocketControlClient(config.control_socket, timeout, timeout * 10);
  AsyncPeerSender peers(config, WallNow);
  BrokerDeps deps;
  deps.control = control.get();
  deps.peers = &peers;
  deps.now = WallNow;
  deps.run_command = [&config](const std::string& command) {
    return RunShellCommand(command, config.hypervisor_timeout_s);
  };
  Broker broker(config, deps);
  MessageVerifier verifier(config.key, config.replay_window_s);
  auto server = BrokerServer::Start(config, &broker, &verifier, WallNow);
  if (!server) {
    std::fprintf(stderr, "migratefs-broker: %s\n", server.error().message.c_str());
    return 1;
  }
  LinkMonitor links(config.links, config.sys_root, config.saturation_pct);
  links.Sample(MonotonicNow());
  spdlog::info("broker {} up: control {}, listen {}, socket {}, period {} s, {} link(s), {} peer(s)",
               config.host, config.control_socket, config.listen.empty() ? "-" : config.listen,
               config.socket.empty() ? "-" : config.socket, config.policy.period_s,
               config.links.size(), config.peers.size());
  double next = MonotonicNow() + config.policy.period_s;
  while (!WaitForSignal(signals, next)) {
    next += config.policy.period_s;
    double now = MonotonicNow();
    if (next < now) next = now + config.policy.period_s;  // a slow period: do not burst
    broker.Tick(links.Sample(now));
  }
  server.value()->Stop();
  broker.WaitForCompletions();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"migratefs-broker: per-host migration broker (seed 004, Alg. 1 and 2)"};
  std::string config_path;
  std::string level = "info";
  app.add_option("--config,-c", config_path, "TOML configuration file")->required();
  app.add_option("--log-level", level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.set_version_flag("--version", MIGRATEFS_VERSION);
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  return Run(config_path);
}
