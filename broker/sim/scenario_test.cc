#include "broker/sim/scenario.h"

#include <gtest/gtest.h>

#include <string>

namespace migratefs::sim {
namespace {

const std::string kDir = MIGRATEFS_SCENARIO_DIR;

TEST(Scenario, PaperScenarioLoadsWithThePapersNumbers) {
  auto s = LoadScenario(kDir + "/paper.toml");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s.value().machines, 500u);
  EXPECT_DOUBLE_EQ(s.value().link_bps, 10e9 / 8);
  EXPECT_DOUBLE_EQ(s.value().disk_bytes, 50e9);
  EXPECT_DOUBLE_EQ(s.value().write_bps, 30e6);
  EXPECT_EQ(s.value().count, 1000u);
  EXPECT_DOUBLE_EQ(s.value().interval_s, 100);
  EXPECT_DOUBLE_EQ(s.value().policy_config.danger_pct, 300);
  EXPECT_DOUBLE_EQ(s.value().policy_config.warning_pct, 400);
  EXPECT_DOUBLE_EQ(s.value().policy_config.period_s, 60);
  EXPECT_EQ(s.value().duration_periods, 5);
}

TEST(Scenario, LargeScenarioLoads) {
  auto s = LoadScenario(kDir + "/large.toml");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s.value().machines, 50000u);
  EXPECT_EQ(s.value().count, 100000u);
}

TEST(Scenario, EmptyFileIsAllDefaults) {
  auto s = ParseScenario("", "empty.toml");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s.value().policy, PolicyKind::kBroker);
}

TEST(Scenario, UnitsAreConverted) {
  auto s = ParseScenario("[topology]\nlink_gbit_s = 1\n[vms]\ndisk_gb = 2\nwrite_mb_s = 3\n"
                         "[policy]\nincrease_mb_s = 4\nmin_network_mb_s = 0.5\n", "u.toml");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_DOUBLE_EQ(s.value().link_bps, 125e6);
  EXPECT_DOUBLE_EQ(s.value().disk_bytes, 2e9);
  EXPECT_DOUBLE_EQ(s.value().write_bps, 3e6);
  EXPECT_DOUBLE_EQ(s.value().policy_config.increase_bps, 4e6);
  EXPECT_DOUBLE_EQ(s.value().policy_config.min_network_bps, 0.5e6);
}

struct BadCase {
  const char* toml;
  const char* must_mention;
};

class BadScenario : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadScenario, ErrorNamesTheField) {
  auto s = ParseScenario(GetParam().toml, "bad.toml");
  ASSERT_FALSE(s.ok()) << GetParam().toml;
  EXPECT_EQ(s.error().code, errc::kInvalidArgument);
  const std::string& m = s.error().message;
  EXPECT_EQ(m.rfind("bad.toml: ", 0), 0u) << m;
  EXPECT_NE(m.find(GetParam().must_mention), std::string::npos) << m;
}

INSTANTIATE_TEST_SUITE_P(
    Fields, BadScenario,
    ::testing::Values(
        BadCase{"[topology]\nmachines = 1\n", "topology.machines"},
        BadCase{"[topology]\nmachines = -5\n", "topology.machines"},
        BadCase{"[topology]\nmachines = \"many\"\n", "topology.machines"},
        BadCase{"[topology]\nlink_gbit_s = 0\n", "topology.link_gbit_s"},
        BadCase{"[topology]\nmachine = 5\n", "topology.machine: unknown key"},
        BadCase{"[topolgy]\nmachines = 5\n", "topolgy: unknown table"},
        BadCase{"topology = 3\n", "topology: must be a table"},
        BadCase{"[run]\npolicy = \"fast\"\n", "run.policy: must be one of: broker, none"},
        BadCase{"[run]\ntick_s = 7\n", "run.tick_s: must divide policy.period_s"},
        BadCase{"[background]\nhost_mean = 1.5\n", "background.host_mean"},
        BadCase{"[hotspots]\nload_pct = 101\n", "hotspots.load_pct"},
        BadCase{"[hotspots]\nduration_periods = 0\n", "hotspots.duration_periods"},
        BadCase{"[hotspots]\nsaturation = 0\n", "hotspots.saturation"},
        BadCase{"[vms]\ndisk_gb = -1\n", "vms.disk_gb"},
        BadCase{"[vms]\ndirty_fraction = 2\n", "vms.dirty_fraction"},
        BadCase{"[tasks]\ncount = 0\n", "tasks.count"},
        BadCase{"[tasks]\ndeadline_s = 0\n", "tasks.deadline_s"},
        BadCase{"[tasks]\nimportant_pct = -1\n", "tasks.important_pct"},
        BadCase{"[policy]\ndanger_pct = 90\n", "policy.danger_pct"},
        BadCase{"[policy]\nwarning_pct = 250\n", "policy.warning_pct"},
        BadCase{"[policy]\nincrease_mb_s = 0\n", "policy.increase_mb_s"},
        BadCase{"[policy]\nquiet_periods = -1\n", "policy.quiet_periods"},
        BadCase{"[policy]\nmin_disk_mb_s = 0\n", "policy.min_disk_mb_s"},
        BadCase{"[policy]\ncongestion = \"maybe\"\n", "policy.congestion"},
        BadCase{"[policy\nperiod_s = 60\n", "line 1"}));

TEST(Scenario, MissingFileSaysSo) {
  auto s = LoadScenario("/nonexistent/x.toml");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("/nonexistent/x.toml"), std::string::npos);
}

}  // namespace
}  // namespace migratefs::sim
