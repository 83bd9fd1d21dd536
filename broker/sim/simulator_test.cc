#include "broker/sim/simulator.h"

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "broker/sim/report.h"
#include "broker/sim/scenario.h"

namespace migratefs::sim {
namespace {

Scenario Parse(const std::string& toml) {
  auto s = ParseScenario(toml, "test.toml");
  EXPECT_TRUE(s.ok()) << s.error().message;
  return s.value();
}

// Two machines on one ToR, 1 Gbit/s (125 MB/s) links, no tenants, no hot spots,
// one 10 GB VM writing 25 MB/s: the copy drains at 100 MB/s.
const char* kTiny = R"(
[run]
policy = "none"
[topology]
machines = 2
hosts_per_tor = 2
link_gbit_s = 1
[background]
host_mean = 0
host_stddev = 0
tor_mean = 0
tor_stddev = 0
[hotspots]
load_pct = 0
[vms]
disk_gb = 10
write_mb_s = 25
vmm_time_s = 5
[tasks]
count = 1
deadline_s = 350
)";

TEST(Simulator, TinyScenarioByHand) {
  Results r = Simulate(Parse(kTiny));
  // 10 GB / (125 - 25) MB/s = 100 s, + 5 s for the hypervisor.
  EXPECT_EQ(r.tasks, 1u);
  EXPECT_EQ(r.tasks_completed, 1u);
  EXPECT_NEAR(r.migration_time_s.max, 105, 1e-6);
  EXPECT_NEAR(r.bytes_moved, 125e6 * 100, 1);
  EXPECT_EQ(r.sla_violation_periods, 0u);
  EXPECT_EQ(r.missed_deadlines, 0u);
  EXPECT_EQ(r.decisions, 0u);
  EXPECT_EQ(r.policy, "none");
}

TEST(Simulator, TinyScenarioUnderTheBrokerByHand) {
  Scenario s = Parse(kTiny);
  s.policy = PolicyKind::kBroker;
  Results r = Simulate(s);
  // t=60: 4 GB left, the lone migration saturated its link: slack 290/45 > danger,
  // backoff -> limit 62.5 MB/s, drain 37.5 MB/s. t=120: 1.75 GB left, link no
  // longer saturated: hold. Done at 120 + 1.75e9/37.5e6 + 5 = 171.67 s.
  EXPECT_NEAR(r.migration_time_s.max, 120 + 1.75e9 / 37.5e6 + 5, 1e-6);
  EXPECT_EQ(r.decisions, 2u);
  EXPECT_EQ(r.backoff_decisions, 1u);
  EXPECT_EQ(r.sla_violation_periods, 0u);  // no machine was in shortage
}

TEST(Simulator, TinyScenarioWithSlaCongestionIsUnlimited) {
  Scenario s = Parse(kTiny);
  s.policy = PolicyKind::kBroker;
  s.congestion = Congestion::kSla;  // saturation without shortage is no congestion
  Results r = Simulate(s);
  EXPECT_NEAR(r.migration_time_s.max, 105, 1e-6);
  EXPECT_EQ(r.decisions, 1u);
  EXPECT_EQ(r.backoff_decisions, 0u);
}

TEST(Simulator, PermanentShortageByHand) {
  // Both machines start a shortage every period; tenants then want half the link.
  // The copy gets 62.5 MB/s, drains 50 MB/s: 6 GB take exactly 120 s, i.e.
  // periods 0 and 1, each saturating both machines' links: 4 violation periods.
  Scenario s = Parse(kTiny);
  s.load_pct = 100;
  s.hot_demand = 0.5;
  s.disk_bytes = 6e9;
  s.write_bps = 12.5e6;
  s.vmm_time_s = 0;
  Results r = Simulate(s, RunOptions{true, nullptr});
  EXPECT_NEAR(r.migration_time_s.max, 120, 1e-6);
  EXPECT_EQ(r.sla_violation_periods, 4u);
  EXPECT_EQ(r.hot_periods_crossed, 4u);
  ASSERT_GE(r.series.size(), 2u);
  EXPECT_EQ(r.series[0].violations, 2u);
  EXPECT_EQ(r.series[1].violations, 2u);
}

TEST(Simulator, MissedDeadlineIsCounted) {
  Scenario s = Parse(kTiny);
  s.deadline_s = 100;  // the copy needs 105 s
  Results r = Simulate(s);
  EXPECT_EQ(r.missed_deadlines, 1u);
}

// A busy small cloud where every branch of the policy gets exercised.
Scenario Busy() {
  auto s = LoadScenario(std::string(MIGRATEFS_SCENARIO_DIR) + "/paper.toml");
  EXPECT_TRUE(s.ok());
  Scenario b = s.value();
  b.machines = 40;
  b.hosts_per_tor = 8;
  b.count = 120;
  b.interval_s = 20;
  b.load_pct = 25;
  b.deadline_s = 600;
  b.important_pct = 30;
  return b;
}

TEST(Simulator, DecisionsMatchTheLibraryFedTheSameObservations) {
  struct Seen {
    uint64_t task;
    policy::Observation obs;
    policy::Decision decision;
  };
  std::vector<Seen> seen;
  RunOptions options;
  options.observer = [&](uint64_t task, const policy::Observation& o,
                         const policy::Decision& d) { seen.push_back({task, o, d}); };
  Scenario s = Busy();
  Results r = Simulate(s, options);
  ASSERT_EQ(seen.size(), r.decisions);
  ASSERT_GT(r.backoff_decisions, 0u);
  ASSERT_GT(r.release_requests, 0u);

  std::map<uint64_t, policy::TaskState> states;  // the library, run by hand
  int network_limits = 0, disk_limits = 0;
  for (const Seen& x : seen) {
    policy::Decision d = policy::Decide(s.policy_config, x.obs, &states[x.task]);
    ASSERT_EQ(d.network_limit_bps, x.decision.network_limit_bps) << "task " << x.task;
    ASSERT_EQ(d.disk_limit_bps, x.decision.disk_limit_bps) << "task " << x.task;
    ASSERT_EQ(d.release_request, x.decision.release_request) << "task " << x.task;
    ASSERT_EQ(d.reasons, x.decision.reasons) << "task " << x.task;
    network_limits += d.network_limit_bps.has_value();
    disk_limits += d.disk_limit_bps.has_value();
  }
  EXPECT_GT(network_limits, 0);
  EXPECT_GT(disk_limits, 0);
}

TEST(Simulator, NonePolicyNeverLimits) {
  Scenario s = Busy();
  s.policy = PolicyKind::kNone;
  Results r = Simulate(s);
  EXPECT_EQ(r.decisions, 0u);
  EXPECT_EQ(r.time_network_limited_s, 0);
  EXPECT_EQ(r.time_disk_limited_s, 0);
  EXPECT_EQ(r.tasks_completed, r.tasks);
}

TEST(Simulator, SameSeedSameJson) {
  Scenario s = Busy();
  EXPECT_EQ(ToJson(Simulate(s)), ToJson(Simulate(s)));
  Scenario other = s;
  other.seed = 2;
  EXPECT_NE(ToJson(Simulate(s)), ToJson(Simulate(other)));
}

// The binary itself: fixed interface, exit codes, byte-equal output.
std::string RunBinary(const std::string& args, int* status) {
  std::string out;
  FILE* p = popen((std::string(MIGRATEFS_SIM_BINARY) + " " + args).c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  *status = pclose(p);
  return out;
}

TEST(SimBinary, JsonIsOneObjectAndDeterministic) {
  const std::string args = std::string(MIGRATEFS_SCENARIO_DIR) +
                           "/paper.toml --policy broker --deadline 800 --load 10 --seed 3 --json";
  int status1 = -1, status2 = -1;
  const std::string a = RunBinary(args, &status1), b = RunBinary(args, &status2);
  EXPECT_EQ(status1, 0);
  EXPECT_EQ(status2, 0);
  EXPECT_EQ(a, b);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a.front(), '{');
  EXPECT_EQ(a.find('\n'), a.size() - 1);
  for (const char* key : {"\"sla_violation_periods\"", "\"missed_deadlines\"", "\"tasks\"",
                          "\"policy\":\"broker\"", "\"deadline_s\":800", "\"load_pct\":10",
                          "\"seed\":3", "\"migration_time_s\"", "\"bytes_moved\"",
                          "\"time_network_limited_s\""}) {
    EXPECT_NE(a.find(key), std::string::npos) << key << " in " << a;
  }
}

TEST(SimBinary, BadScenarioExitsTwoNamingTheField) {
  const std::string path = ::testing::TempDir() + "/bad_scenario.toml";
  FILE* f = fopen(path.c_str(), "w");
  fputs("[vms]\ndisk_gb = \"big\"\n", f);
  fclose(f);
  int status = -1;
  const std::string err = RunBinary(path + " --json 2>&1", &status);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_NE(err.find("vms.disk_gb"), std::string::npos) << err;
}

TEST(SimBinary, BadFlagValueExitsTwo) {
  int status = -1;
  const std::string err =
      RunBinary(std::string(MIGRATEFS_SCENARIO_DIR) + "/paper.toml --load 150 2>&1", &status);
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_NE(err.find("hotspots.load_pct"), std::string::npos) << err;
  RunBinary(std::string(MIGRATEFS_SCENARIO_DIR) + "/paper.toml --policy fast 2>&1", &status);
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

}  // namespace
}  // namespace migratefs::sim
