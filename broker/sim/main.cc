// migratefs-sim SCENARIO.toml [--policy none|broker] [--deadline S] [--load PCT]
//               [--seed N] [--json] [--csv FILE]
// migratefs-sim --batch BATCH.toml [--strategy auto|gang|serial] [--allocation optimal|equal] [--json]
// Exit codes: 0 ok, 2 bad scenario file or flag, 1 cannot write the CSV file.
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <optional>

#include "broker/sim/batch.h"
#include "broker/sim/report.h"
#include "broker/sim/scenario.h"
#include "broker/sim/simulator.h"

namespace sim = migratefs::sim;

int main(int argc, char** argv) {
  CLI::App app{"migratefs-sim: simulate disk-image migrations in a share-nothing cloud "
               "under the MigrateFS broker policy (seed 004, Alg. 1 and 2)"};
  std::string scenario_path, policy, csv_path;
  std::optional<double> deadline, load;
  std::optional<uint64_t> seed;
  bool json = false;
  app.add_option("scenario", scenario_path, "scenario TOML file")->required();
  app.add_option("--policy", policy, "none | broker (overrides run.policy)")
      ->check(CLI::IsMember({"none", "broker"}));
  app.add_option("--deadline", deadline, "seconds from arrival (overrides tasks.deadline_s)");
  app.add_option("--load", load, "% of machines starting a shortage each period "
                                 "(overrides hotspots.load_pct)");
  app.add_option("--seed", seed, "PRNG seed (overrides run.seed)");
  app.add_flag("--json", json, "print one JSON object instead of text");
  app.add_option("--csv", csv_path, "write a per-period time series to this file");
  bool batch = false;
  std::string strategy, allocation;
  app.add_flag("--batch", batch, "SCENARIO is a batch on one link (broker/sim/README.md \"Batches on one link\")");
  app.add_option("--strategy", strategy, "batch: auto | gang | serial (overrides run.strategy)")
      ->check(CLI::IsMember({"auto", "gang", "serial"}));
  app.add_option("--allocation", allocation, "batch: optimal | equal (overrides run.allocation)")
      ->check(CLI::IsMember({"optimal", "equal"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  if (batch) {
    auto b = sim::LoadBatchScenario(scenario_path);
    if (!b.ok()) {
      std::cerr << "migratefs-sim: " << b.error().message << "\n";
      return 2;
    }
    sim::BatchScenario s = b.value();
    if (!strategy.empty()) s.strategy = strategy;
    if (!allocation.empty()) s.allocation = allocation;
    sim::BatchResults r = sim::SimulateBatch(s);
    std::cout << (json ? sim::BatchToJson(r) + "\n" : sim::BatchToText(r));
    return 0;
  }
  auto loaded = sim::LoadScenario(scenario_path);
  if (!loaded.ok()) {
    std::cerr << "migratefs-sim: " << loaded.error().message << "\n";
    return 2;
  }
  sim::Scenario scenario = loaded.value();
  if (!policy.empty())
    scenario.policy = policy == "none" ? sim::PolicyKind::kNone : sim::PolicyKind::kBroker;
  if (deadline) scenario.deadline_s = *deadline;
  if (load) scenario.load_pct = *load;
  if (seed) scenario.seed = *seed;
  if (auto valid = sim::ValidateScenario(scenario); !valid.ok()) {
    std::cerr << "migratefs-sim: " << valid.error().message << " (after command-line flags)\n";
    return 2;
  }

  std::ofstream csv;  // opened first: a bad path must not cost a whole run
  if (!csv_path.empty()) {
    csv.open(csv_path);
    if (!csv) {
      std::cerr << "migratefs-sim: cannot write " << csv_path << "\n";
      return 1;
    }
  }

  sim::RunOptions options;
  options.keep_series = !csv_path.empty();
  sim::Results results = sim::Simulate(scenario, options);

  if (!csv_path.empty()) {
    sim::WriteCsv(results, csv);
    if (!csv.flush()) {
      std::cerr << "migratefs-sim: cannot write " << csv_path << "\n";
      return 1;
    }
  }
  std::cout << (json ? sim::ToJson(results) + "\n" : sim::ToText(results));
  return 0;
}
