// migratefs-scheduler: the Migrations Scheduler of seed 004 as a one-shot command.
//   migratefs-scheduler submit --tasks FILE --topology FILE --keyfile KEY [--no-wait]
//   migratefs-scheduler plan   --tasks FILE --topology FILE
// `plan` prints paths and shared sections; `submit` hands each task to its source
// broker, waits for the outcome and prints the JSON report. Exit status: 0 every
// deadline met, 1 some task missed or failed, 2 bad input.
#include <chrono>
#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>

#include "broker/daemon/broker_config.h"
#include "broker/scheduler/plan.h"
#include "broker/scheduler/runner.h"

namespace {

using namespace migratefs::scheduler;

double WallNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "migratefs-scheduler: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"migratefs-scheduler: plans migration tasks and hands them to the brokers"};
  app.require_subcommand(1);
  std::string tasks_path, topology_path, keyfile, output;
  RunOptions options;
  bool no_wait = false;
  auto add_inputs = [&](CLI::App* sub) {
    sub->add_option("--tasks", tasks_path, "task file (TOML, or JSON by .json)")->required();
    sub->add_option("--topology", topology_path, "topology file (TOML, or JSON by .json)")->required();
  };
  CLI::App* plan_cmd = app.add_subcommand("plan", "print paths and shared sections");
  add_inputs(plan_cmd);
  CLI::App* submit = app.add_subcommand("submit", "submit to the brokers and report");
  add_inputs(submit);
  submit->add_option("--keyfile", keyfile, "the brokers' pre-shared key")->required();
  submit->add_option("--poll", options.poll_s, "seconds between status polls")->check(CLI::Range(0.05, 600.0));
  submit->add_option("--rpc-timeout", options.rpc_timeout_s, "seconds per broker request")->check(CLI::Range(0.05, 600.0));
  submit->add_option("--timeout", options.timeout_s, "stop waiting after this many seconds (default: latest deadline + 120)");
  submit->add_option("--output,-o", output, "write the report here instead of stdout");
  submit->add_flag("--no-wait", no_wait, "submit only");
  CLI11_PARSE(app, argc, argv);

  auto topology = Topology::Load(topology_path);
  if (!topology) return Fail(topology.error().message);
  auto tasks = LoadTasks(tasks_path, topology.value());
  if (!tasks) return Fail(tasks.error().message);
  Plan plan = MakePlan(tasks.value(), topology.value(), WallNow());
  if (plan_cmd->parsed()) {
    std::printf("%s\n", PlanJson(plan).dump(2).c_str());
    return 0;
  }
  auto key = migratefs::broker::ReadKeyFile(keyfile);
  if (!key) return Fail("--keyfile: " + key.error().message);
  options.key = key.value();
  options.wait = !no_wait;
  options.now = WallNow;
  options.sleep = [](double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); };
  nlohmann::json report = RunPlan(plan, topology.value(), options);
  std::string text = report.dump(2) + "\n";
  if (output.empty()) {
    std::fputs(text.c_str(), stdout);
  } else if (FILE* f = std::fopen(output.c_str(), "w")) {
    std::fputs(text.c_str(), f);
    std::fclose(f);
  } else {
    return Fail("cannot write " + output);
  }
  return AllMet(report) ? 0 : 1;
}
