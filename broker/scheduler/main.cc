// migratefs-scheduler: the Migrations Scheduler of seed 004 as a one-shot command.
//   migratefs-scheduler submit --tasks FILE --topology FILE --keyfile KEY [--no-wait]
//   migratefs-scheduler plan   --tasks FILE --topology FILE
//   migratefs-scheduler rates  --capacity-mbps R --dirty-mbps D[,D...] --rounds n
//                              --sizes-mb V1,V2,... [--json]
//   migratefs-scheduler predict --profile FILE [--profile FILE...] --net-kbps R
//                              [--rtt-ms X] [--deadline-s T] [--step S] [--json]
// `plan` prints paths and shared sections; `submit` hands each task to its source
// broker, waits for the outcome and prints the JSON report; `rates` prints seed 000's
// optimal rates for migrations sharing one link (broker/policy/rate_allocation.h);
// `predict` prints seed 002's hybrid-copy prediction for write profiles, per S, and the
// S it recommends (broker/policy/hybrid_predictor.h, broker/scheduler/predict.h).
// Exit status: 0 every deadline met (rates: solved; predict: predicted, and the
// deadline if given can be met), 1 some task missed or failed (predict: no S meets
// the deadline), 2 bad input (rates: also no feasible allocation).
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "broker/daemon/broker_config.h"
#include "broker/policy/rate_allocation.h"
#include "broker/scheduler/plan.h"
#include "broker/scheduler/predict.h"
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

// `rates`: everything is read as text so that every refusal names its option.
constexpr double kMB = 1e6;  // 1 MB = 10^6 bytes, as in seed 000's table

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// A finite decimal number, the whole text; false otherwise.
bool ParseNumber(const std::string& text, double* out) {
  std::string t = Trim(text);
  if (t.empty()) return false;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(t.c_str(), &end);
  if (errno != 0 || end != t.c_str() + t.size() || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

// "a,b,c" -> numbers; the message names the option and the element.
std::string ParseList(const std::string& option, const std::string& text, std::vector<double>* out) {
  out->clear();
  size_t start = 0;
  for (size_t k = 1;; ++k) {
    size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    double v = 0;
    if (Trim(item).empty()) return option + ": value " + std::to_string(k) + " is empty";
    if (!ParseNumber(item, &v)) return option + ": value " + std::to_string(k) + " (\"" + Trim(item) + "\") is not a number";
    if (v < 0) return option + ": value " + std::to_string(k) + " (" + Trim(item) + ") must be >= 0";
    out->push_back(v);
    if (comma == std::string::npos) return "";
    start = comma + 1;
  }
}

struct RatesArgs {
  std::string capacity, dirty, rounds, sizes;
  bool json = false;
};

int RunRates(const RatesArgs& args) {
  namespace pol = migratefs::policy;
  double capacity = 0;
  if (!ParseNumber(args.capacity, &capacity) || !(capacity > 0))
    return Fail("--capacity-mbps: must be a number > 0 (got \"" + args.capacity + "\")");
  std::vector<double> sizes, dirty;
  if (std::string e = ParseList("--sizes-mb", args.sizes, &sizes); !e.empty()) return Fail(e);
  if (std::string e = ParseList("--dirty-mbps", args.dirty, &dirty); !e.empty()) return Fail(e);
  if (dirty.size() != 1 && dirty.size() != sizes.size())
    return Fail("--dirty-mbps: " + std::to_string(dirty.size()) + " values for " + std::to_string(sizes.size()) +
                " sizes (give one for all or one per migration)");
  double rounds = 0;
  if (!ParseNumber(args.rounds, &rounds) || rounds != std::floor(rounds) || rounds < 1 || rounds > pol::kMaxRounds)
    return Fail("--rounds: must be a whole number 1.." + std::to_string(pol::kMaxRounds) + " (got \"" + args.rounds +
                "\")");
  double dirty_sum = 0;
  for (size_t j = 0; j < sizes.size(); ++j) dirty_sum += dirty.size() == 1 ? dirty[0] : dirty[j];
  if (dirty_sum >= capacity) {
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  "--dirty-mbps: no feasible allocation: the dirty rates add up to %g MB/s, not below "
                  "--capacity-mbps %g (every rate must exceed its dirty rate)",
                  dirty_sum, capacity);
    return Fail(buf);
  }
  pol::RateProblem problem;
  problem.capacity_bps = capacity * kMB;
  for (double v : sizes) problem.size_bytes.push_back(v * kMB);
  for (double d : dirty) problem.dirty_bps.push_back(d * kMB);
  problem.rounds = static_cast<int>(rounds);
  auto solved = pol::AllocateRates(problem);
  if (!solved) return Fail(solved.error().message);  // the checks above make this unreachable
  const pol::RateAllocation& a = solved.value();
  if (args.json) {
    nlohmann::json out;
    out["rates_mbps"] = nlohmann::json::array();
    for (double r : a.rates_bps) out["rates_mbps"].push_back(r / kMB);
    out["total_s"] = a.total_s;
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  std::printf("%-9s %12s %12s %12s\n", "migration", "size_MB", "dirty_MB/s", "rate_MB/s");
  for (size_t j = 0; j < sizes.size(); ++j) {
    std::printf("%-9zu %12.2f %12.2f %12.2f%s\n", j + 1, sizes[j], dirty.size() == 1 ? dirty[0] : dirty[j],
                a.rates_bps[j] / kMB, a.at_floor[j] ? "  (at its dirty rate: the optimum wants less)" : "");
  }
  std::printf("total_s %.3f (pre-copy %.3f + final phase %.3f), %d rounds, capacity %g MB/s\n", a.total_s,
              a.precopy_s, a.downtime_s, problem.rounds, capacity);
  return 0;
}

struct PredictArgs {
  std::vector<std::string> profiles;
  std::string net_kbps, rtt_ms = "5", deadline_s, step = "5";
  bool json = false;
};

int RunPredict(const PredictArgs& args) {
  namespace pol = migratefs::policy;
  pol::PredictInput in;
  for (const std::string& path : args.profiles) {
    auto images = LoadProfiles(path);
    if (!images) return Fail("--profile " + images.error().message);
    for (auto& im : images.value()) in.images.push_back(std::move(im));
  }
  double v = 0;
  if (!ParseNumber(args.net_kbps, &v) || !(v > 0))
    return Fail("--net-kbps: must be a number > 0, KB/s with 1 KB = 1000 bytes (got \"" + args.net_kbps + "\")");
  in.net_bps = v * 1000;
  if (!ParseNumber(args.rtt_ms, &v) || v < 0) return Fail("--rtt-ms: must be a number >= 0 (got \"" + args.rtt_ms + "\")");
  in.rtt_s = v / 1000;
  if (!args.deadline_s.empty()) {
    if (!ParseNumber(args.deadline_s, &v) || !(v > 0))
      return Fail("--deadline-s: must be a number > 0, seconds from the start (got \"" + args.deadline_s + "\")");
    in.deadline_s = v;
  }
  if (!ParseNumber(args.step, &v) || !(v > 0) || v > 100)
    return Fail("--step: must be a number in (0, 100] (got \"" + args.step + "\")");
  in.s_percent = pol::SPercentSteps(v);
  auto predicted = pol::Predict(in);
  if (!predicted) return Fail("--profile: " + predicted.error().message);
  if (args.json) {
    std::printf("%s\n", PredictionJson(predicted.value()).dump().c_str());
  } else {
    std::fputs(PredictionText(in, predicted.value()).c_str(), stdout);
  }
  return predicted.value().deadline_met ? 0 : 1;
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
  submit->add_flag("--no-wait", no_wait, "submit only (serial chains then start at once)");
  std::string strategy = "auto";
  for (CLI::App* sub : {plan_cmd, submit}) {
    sub->add_option("--strategy", strategy, "serial vs gang per batch: auto (seed 003's rules), gang, serial")
        ->check(CLI::IsMember({"auto", "gang", "serial"}));
    sub->add_option("--contention-moderate", options.contention.moderate,
                    "link utilisation (0..1) from which contention is moderate (default 0.5)");
    sub->add_option("--contention-high", options.contention.high,
                    "link utilisation (0..1) from which contention is high (default 0.8)");
  }
  RatesArgs rates_args;
  CLI::App* rates = app.add_subcommand("rates", "seed 000: optimal rates for migrations sharing one link");
  rates->add_option("--capacity-mbps", rates_args.capacity, "link capacity R, MB/s (1 MB = 10^6 bytes)")->required();
  rates->add_option("--dirty-mbps", rates_args.dirty, "dirty rate D, MB/s: one for all, or a comma list, one per migration")
      ->required();
  rates->add_option("--rounds", rates_args.rounds, "n: rounds 0..n-1 pre-copy, round n final phase")->required();
  rates->add_option("--sizes-mb", rates_args.sizes, "data left per migration, MB, comma-separated")->required();
  rates->add_flag("--json", rates_args.json, "print {\"rates_mbps\":[...],\"total_s\":...}");
  PredictArgs predict_args;
  CLI::App* predict = app.add_subcommand("predict", "seed 002: predicted T, U, fetches and stall per hybrid S");
  predict->add_option("--profile", predict_args.profiles,
                      "write profile (JSON, or TOML): one image, or {\"images\":[...]}; repeat for more images")
      ->required();
  predict->add_option("--net-kbps", predict_args.net_kbps, "link rate for the migration, KB/s (1 KB = 1000 bytes)")
      ->required();
  predict->add_option("--rtt-ms", predict_args.rtt_ms, "round-trip time, ms (default 5)");
  predict->add_option("--deadline-s", predict_args.deadline_s, "deadline, seconds from the start (default none)");
  predict->add_option("--step", predict_args.step, "step of S in percent (default 5: 0, 5, ..., 100)");
  predict->add_flag("--json", predict_args.json, "print {\"rows\":[...],\"precopy\":{...},\"recommended_s\":...}");
  CLI11_PARSE(app, argc, argv);
  if (rates->parsed()) return RunRates(rates_args);
  if (predict->parsed()) return RunPredict(predict_args);

  auto topology = Topology::Load(topology_path);
  if (!topology) return Fail(topology.error().message);
  auto tasks = LoadTasks(tasks_path, topology.value());
  if (!tasks) return Fail(tasks.error().message);
  if (auto s = migratefs::policy::ValidateContentionThresholds(options.contention); !s) {
    return Fail("--contention-moderate/--contention-high: " + s.error().message);
  }
  options.strategy = strategy == "gang"     ? StrategyMode::kGang
                     : strategy == "serial" ? StrategyMode::kSerial
                                            : StrategyMode::kAuto;
  Plan plan = MakePlan(tasks.value(), topology.value(), WallNow());
  if (plan_cmd->parsed()) {
    // Without the brokers' link samples the contention is unknown (counts as moderate).
    ApplyStrategies(&plan, topology.value(), {}, options.strategy, options.contention);
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
