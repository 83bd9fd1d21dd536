#include "broker/ctl/format.h"

#include <gtest/gtest.h>

namespace migratefs::ctl {
namespace {

using nlohmann::json;

TEST(FormatTest, Rates) {
  EXPECT_EQ(FormatRate(0), "0 KB/s");
  EXPECT_EQ(FormatRate(850), "850 KB/s");
  EXPECT_EQ(FormatRate(12345), "12.3 MB/s");
  EXPECT_EQ(FormatRate(1250000), "1.25 GB/s");
  EXPECT_EQ(FormatLimit(0), "none");
  EXPECT_EQ(FormatLimit(5000), "5.00 MB/s");
}

TEST(FormatTest, Bytes) {
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1500000), "1.50 MB");
  EXPECT_EQ(FormatBytes(64000000000), "64.0 GB");
}

TEST(FormatTest, Eta) {
  EXPECT_EQ(FormatEta(-1), "-");
  EXPECT_EQ(FormatEta(12.4), "12s");
  EXPECT_EQ(FormatEta(185), "3m05s");
  EXPECT_EQ(FormatEta(3720), "1h02m");
}

TEST(FormatTest, PercentDone) {
  json m = {{"progress", {{"phase", "dirty"}, {"bytes_total", 1000}, {"bytes_left", 250}}}};
  EXPECT_DOUBLE_EQ(PercentDone(m), 75);
  m["progress"]["phase"] = "mirror";
  EXPECT_DOUBLE_EQ(PercentDone(m), 100);
  EXPECT_DOUBLE_EQ(PercentDone(json::object()), 0);
  EXPECT_DOUBLE_EQ(PercentDone(json("garbage")), 0);
}

TEST(FormatTest, BarAndLinesTolerateMissingOrMistypedFields) {
  EXPECT_EQ(ProgressBar(50, 10), "[#####.....]");
  EXPECT_EQ(ProgressBar(250, 4), "[####]");
  json odd = {{"id", 7}, {"progress", {{"phase", 3}, {"eta_s", "soon"}}}};
  EXPECT_NO_THROW(SummaryLine(odd));
  EXPECT_NO_THROW(BarLine(odd, 20));
  EXPECT_NO_THROW(ProgressBlock(odd));
  EXPECT_NO_THROW(MigrationTable(json::array({odd})));
  EXPECT_EQ(MigrationTable(json::array()), "no migrations\n");
}

TEST(FormatTest, BarLineShowsPhaseRateEta) {
  json m = {{"id", "m1"},
            {"progress",
             {{"phase", "dirty"}, {"bytes_total", 100}, {"bytes_left", 50},
              {"network_kbps", 12345}, {"eta_s", 80}, {"pause_reason", ""}}}};
  std::string line = BarLine(m, 10);
  EXPECT_EQ(line.rfind("m1 [#####.....]  50.0%  dirty", 0), 0u) << line;
  EXPECT_NE(line.find("12.3 MB/s"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA 1m20s"), std::string::npos) << line;
}

}  // namespace
}  // namespace migratefs::ctl
