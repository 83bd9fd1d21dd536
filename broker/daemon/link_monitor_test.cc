#include "broker/daemon/link_monitor.h"

#include <gtest/gtest.h>

#include "broker/daemon/test_util.h"

namespace migratefs::broker {
namespace {

class LinkMonitorTest : public ::testing::Test {
 protected:
  void Counters(const std::string& iface, uint64_t tx, uint64_t rx) {
    dir_.Write("class/net/" + iface + "/statistics/tx_bytes", std::to_string(tx) + "\n");
    dir_.Write("class/net/" + iface + "/statistics/rx_bytes", std::to_string(rx) + "\n");
  }
  LinkMonitor Monitor() {
    return LinkMonitor({{"eth0", 1000, "a-s1"}, {"eth1", 500, ""}}, dir_.path(), 90);
  }
  testing::ScratchDir dir_;
};

TEST_F(LinkMonitorTest, FirstSampleMeasuresNothing) {
  Counters("eth0", 5'000'000, 0);
  Counters("eth1", 0, 0);
  LinkMonitor m = Monitor();
  const auto& s = m.Sample(10);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_TRUE(s[0].readable);
  EXPECT_EQ(s[0].tx_kbps, 0);
  EXPECT_FALSE(s[0].saturated);
  EXPECT_EQ(s[0].section, "a-s1");
}

TEST_F(LinkMonitorTest, SaturatedAboveThresholdInEitherDirection) {
  Counters("eth0", 0, 0);
  Counters("eth1", 0, 0);
  LinkMonitor m = Monitor();
  m.Sample(0);
  // 2 s: eth0 sent 1.8 MB = 900 KB/s (exactly 90 %: not above), eth1 received 950 KB.
  Counters("eth0", 1'800'000, 0);
  Counters("eth1", 0, 950'000);
  auto s = m.Sample(2);
  EXPECT_DOUBLE_EQ(s[0].tx_kbps, 900);
  EXPECT_FALSE(s[0].saturated);
  EXPECT_DOUBLE_EQ(s[1].rx_kbps, 475);
  EXPECT_TRUE(s[1].saturated);  // 475 > 450 = 90 % of 500
  // Next second eth0 moves 950 KB: saturated.
  Counters("eth0", 2'750'000, 0);
  s = m.Sample(3);
  EXPECT_DOUBLE_EQ(s[0].tx_kbps, 950);
  EXPECT_TRUE(s[0].saturated);
  EXPECT_FALSE(s[1].saturated);  // eth1 idle now
}

TEST_F(LinkMonitorTest, CounterResetAndMissingFilesMeasureZero) {
  Counters("eth0", 10'000'000, 0);
  LinkMonitor m = Monitor();
  m.Sample(0);
  EXPECT_FALSE(m.last()[1].readable);  // eth1 has no counters
  Counters("eth0", 100, 0);            // interface re-created: counter went back
  auto s = m.Sample(1);
  EXPECT_EQ(s[0].tx_kbps, 0);
  EXPECT_FALSE(s[0].saturated);
  Counters("eth0", 1'000'100, 0);      // measuring resumes from the new base
  s = m.Sample(2);
  EXPECT_DOUBLE_EQ(s[0].tx_kbps, 1000);
  EXPECT_TRUE(s[0].saturated);
}

TEST_F(LinkMonitorTest, ZeroIntervalIsNotARate) {
  Counters("eth0", 0, 0);
  LinkMonitor m = Monitor();
  m.Sample(5);
  Counters("eth0", 9'000'000, 0);
  EXPECT_FALSE(m.Sample(5)[0].saturated);
}

}  // namespace
}  // namespace migratefs::broker
