#include "broker/daemon/broker_config.h"

#include <gtest/gtest.h>

#include "broker/daemon/test_util.h"

namespace migratefs::broker {
namespace {

const char* kGood = R"(
host = "a"
control_socket = "/run/migratefs/control.sock"
listen = "10.78.0.1:7100"
socket = "/run/migratefs-broker.sock"
keyfile = "KEY"
period = 0.5
danger = 150
warning = 250
C = 2000
n = 3
saturation = 80
vmm_time = 2
hypervisor_command = "virsh migrate --live {vm} qemu+ssh://{target}/system"

[[peer]]
name = "b"
address = "10.78.0.2:7100"

[[link]]
iface = "veth-a"
capacity_kbps = 12500
section = "a-s1"
)";

std::string WithKey(const testing::ScratchDir& dir, std::string text) {
  std::string key = dir.Write("key", "0123456789abcdef0123\n");
  text.replace(text.find("KEY"), 3, key);
  return dir.Write("broker.toml", text);
}

TEST(BrokerConfig, ParsesEveryField) {
  testing::ScratchDir dir;
  auto c = LoadBrokerConfig(WithKey(dir, kGood));
  ASSERT_TRUE(c) << c.error().message;
  const BrokerConfig& config = c.value();
  EXPECT_EQ(config.host, "a");
  EXPECT_EQ(config.listen, "10.78.0.1:7100");
  EXPECT_EQ(config.key, "0123456789abcdef0123");  // trailing newline stripped
  EXPECT_DOUBLE_EQ(config.policy.period_s, 0.5);
  EXPECT_DOUBLE_EQ(config.policy.danger_pct, 150);
  EXPECT_DOUBLE_EQ(config.policy.warning_pct, 250);
  EXPECT_DOUBLE_EQ(config.policy.increase_bps, 2e6);  // C is KB/s
  EXPECT_EQ(config.policy.quiet_periods, 3);
  EXPECT_DOUBLE_EQ(config.saturation_pct, 80);
  EXPECT_DOUBLE_EQ(config.vmm_time_s, 2);
  ASSERT_EQ(config.peers.size(), 1u);
  EXPECT_EQ(config.PeerAddress("b"), "10.78.0.2:7100");
  EXPECT_EQ(config.PeerAddress("zz"), "");
  ASSERT_EQ(config.links.size(), 1u);
  EXPECT_EQ(config.links[0].iface, "veth-a");
  EXPECT_DOUBLE_EQ(config.links[0].capacity_kbps, 12500);
  EXPECT_EQ(config.links[0].section, "a-s1");
  EXPECT_DOUBLE_EQ(config.ReleaseHoldSeconds(), 1.0);  // 2 periods by default
}

TEST(BrokerConfig, DefaultsArePapers) {
  auto c = ParseBrokerConfig("host='a'\ncontrol_socket='/x'\nsocket='/y'\nperiod=60\n", "t");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_DOUBLE_EQ(c.value().policy.danger_pct, 300);
  EXPECT_DOUBLE_EQ(c.value().policy.warning_pct, 400);
  EXPECT_DOUBLE_EQ(c.value().saturation_pct, 90);
  EXPECT_EQ(c.value().sys_root, "/sys");
}

// Each broken config must be refused with a message naming the field.
struct Broken {
  const char* text;
  const char* names;
};

class BrokenConfig : public ::testing::TestWithParam<Broken> {};

TEST_P(BrokenConfig, ErrorNamesTheField) {
  auto c = ParseBrokerConfig(GetParam().text, "broker.toml");
  ASSERT_FALSE(c) << GetParam().text;
  EXPECT_EQ(c.error().code, errc::kInvalidArgument);
  EXPECT_NE(c.error().message.find(GetParam().names), std::string::npos) << c.error().message;
  EXPECT_NE(c.error().message.find("broker.toml"), std::string::npos) << c.error().message;
}

#define BASE "host='a'\ncontrol_socket='/c'\nsocket='/s'\n"
INSTANTIATE_TEST_SUITE_P(
    All, BrokenConfig,
    ::testing::Values(
        Broken{"control_socket='/c'\nsocket='/s'\nperiod=1\n", "\"host\""},
        Broken{"host='a'\nsocket='/s'\nperiod=1\n", "\"control_socket\""},
        Broken{BASE "", "\"period\""},
        Broken{BASE "period='fast'\n", "\"period\" must be a number"},
        Broken{BASE "period=0\n", "\"period\""},
        Broken{BASE "period=1\ndanger=50\n", "\"danger\""},
        Broken{BASE "period=1\ndanger=400\nwarning=300\n", "\"warning\""},
        Broken{BASE "period=1\nn=2.5\n", "\"n\""},
        Broken{BASE "period=1\nC=-1\n", "\"C\""},
        Broken{BASE "period=1\nsaturation=120\n", "\"saturation\""},
        Broken{BASE "period=1\nlisten='nowhere'\nkeyfile='/k'\n", "\"listen\""},
        Broken{BASE "period=1\nlisten='1.2.3.4:5'\n", "\"keyfile\""},
        Broken{BASE "period=1\nperiodd=2\n", "\"periodd\" is not a known field"},
        Broken{BASE "period=1\n[[link]]\niface='eth0'\n", "\"link[0].capacity_kbps\""},
        Broken{BASE "period=1\n[[link]]\niface='../x'\ncapacity_kbps=1\n", "\"link[0].iface\""},
        Broken{BASE "period=1\n[[link]]\niface='e'\ncapacity_kbps=1\nspeed=3\n", "\"link[0].speed\""},
        Broken{BASE "period=1\n[[peer]]\nname='b'\n", "\"peer[0].address\""},
        Broken{BASE "period=1\nlink='eth0'\n", "\"link\" must be an array of tables"},
        Broken{BASE "period=1\nhypervisor_command='virsh {vmname}'\n", "\"hypervisor_command\""},
        Broken{BASE "period=1\nhypervisor_command='virsh {vm'\n", "\"hypervisor_command\""},
        Broken{"host='a'\ncontrol_socket='/c'\nperiod=1\n", "\"listen\" or \"socket\""},
        Broken{BASE "period=1\nmax_parallel=-1\n", "\"max_parallel\""},
        Broken{BASE "period=1\nmax_parallel=1.5\n", "\"max_parallel\""},
        Broken{BASE "period=1\nbudget_kbps='lots'\n", "\"budget_kbps\""},
        Broken{BASE "period=1\nrate_allocation=1\n", "\"rate_allocation\""},
        Broken{BASE "period=1\n[[link]]\niface='e'\ncapacity_kbps=100\nworkload_min_kbps=10\n",
               "\"link[0].workload_max_kbps\" is missing"},
        Broken{BASE "period=1\n[[link]]\niface='e'\ncapacity_kbps=100\nworkload_min_kbps=50\nworkload_max_kbps=40\n",
               "\"link[0].workload_max_kbps\" must be >= workload_min_kbps"},
        Broken{BASE "period=1\n[[link]]\niface='e'\ncapacity_kbps=100\nworkload_max_kbps=140\n",
               "\"link[0].workload_max_kbps\" must not exceed capacity_kbps"},
        Broken{"host = 'a\n", "broker.toml:1"}));
#undef BASE

TEST(BrokerConfig, ReservationsAndFleetCaps) {
  auto c = ParseBrokerConfig(
      "host='a'\ncontrol_socket='/c'\nsocket='/s'\nperiod=1\nmax_parallel=2\nbudget_kbps=50000\n"
      "rate_allocation=false\nallocation_rounds=4\n"
      "[[link]]\niface='eth0'\ncapacity_kbps=125000\nworkload_min_kbps=20000\nworkload_max_kbps=60000\n",
      "broker.toml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c.value().max_parallel, 2);
  EXPECT_EQ(c.value().budget_kbps, 50000);
  EXPECT_FALSE(c.value().rate_allocation);
  EXPECT_EQ(c.value().allocation_rounds, 4);
  const LinkConfig& l = c.value().links.at(0);
  EXPECT_TRUE(l.has_reservation());
  EXPECT_EQ(l.workload_min_kbps, 20000);
  EXPECT_EQ(l.workload_max_kbps, 60000);
  EXPECT_DOUBLE_EQ(l.HeadroomKbps(), 6250);  // 5 % of the capacity by default
}

TEST(BrokerConfig, UnreadableFilesAreNamed) {
  auto c = LoadBrokerConfig("/nonexistent/broker.toml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("/nonexistent/broker.toml"), std::string::npos);

  testing::ScratchDir dir;
  std::string short_key = dir.Write("short", "tiny\n");
  std::string text = kGood;
  text.replace(text.find("KEY"), 3, short_key);
  auto k = LoadBrokerConfig(dir.Write("b.toml", text));
  ASSERT_FALSE(k);
  EXPECT_NE(k.error().message.find("\"keyfile\""), std::string::npos) << k.error().message;
  EXPECT_NE(k.error().message.find("16 bytes"), std::string::npos) << k.error().message;
}

}  // namespace
}  // namespace migratefs::broker
