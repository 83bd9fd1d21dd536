#include "broker/ctl/format.h"

#include <gtest/gtest.h>

#include <sstream>
#include <vector>

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

TEST(FormatTest, HybridPercentCountsBlocks) {
  json m = {{"progress",
             {{"phase", "mirror"}, {"mode", "hybrid"}, {"bytes_total", 1000}, {"bytes_left", 0},
              {"data_blocks", 200}, {"blocks_remote", 50}}}};
  EXPECT_DOUBLE_EQ(PercentDone(m), 75);  // completed at precopy_pct, yet a quarter is remote
  m["progress"]["phase"] = "postcopy";
  m["progress"]["blocks_remote"] = 500;  // clamped
  EXPECT_DOUBLE_EQ(PercentDone(m), 0);
  m["progress"]["phase"] = "finished";
  EXPECT_DOUBLE_EQ(PercentDone(m), 100);
  m["progress"]["phase"] = "bulk";
  m["progress"]["data_blocks"] = 0;  // nothing known yet: bytes, as in pre-copy
  m["progress"]["bytes_left"] = 600;
  EXPECT_DOUBLE_EQ(PercentDone(m), 40);
}

TEST(FormatTest, ModeText) {
  EXPECT_EQ(ModeText(json::object()), "precopy");
  EXPECT_EQ(ModeText(json{{"mode", "precopy"}, {"precopy_pct", 100}}), "precopy");
  json hybrid = {{"mode", "hybrid"},
                 {"precopy_pct", 40},
                 {"blocks_remote", 120},
                 {"bytes_fetched_on_demand", 1500000},
                 {"bytes_pulled", 3000000},
                 {"fetch_latency_ms", {{"p50", 1.24}, {"p99", 8.5}}}};
  EXPECT_EQ(ModeText(hybrid),
            "hybrid: 40% pre-copy, 120 blocks remote, 1.50 MB fetched on demand (p50/p99 1.2/8.5 ms), 3.00 MB pulled");
  std::string block = ProgressBlock(hybrid);
  EXPECT_NE(block.find("mode:           hybrid: 40% pre-copy"), std::string::npos) << block;
  json odd = {{"mode", "hybrid"}, {"precopy_pct", "lots"}, {"fetch_latency_ms", 3}, {"blocks_remote", -4}};
  EXPECT_EQ(ModeText(odd), "hybrid: 0% pre-copy, 0 blocks remote, 0 B fetched on demand (p50/p99 0.0/0.0 ms), 0 B pulled");
}

TEST(FormatTest, TableShowsHybridDetailUnderItsRow) {
  json migrations = json::array(
      {{{"id", "m1"}, {"target", "h:1"}, {"images", {"a.img"}}, {"progress", {{"phase", "dirty"}, {"mode", "precopy"}}}},
       {{"id", "m2"},
        {"target", "h:1"},
        {"images", {"b.img"}},
        {"progress", {{"phase", "postcopy"}, {"mode", "hybrid"}, {"precopy_pct", 60}, {"blocks_remote", 3}}}}});
  std::string table = MigrationTable(migrations);
  std::stringstream lines(table);
  std::vector<std::string> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(line);
  ASSERT_EQ(rows.size(), 4u) << table;  // header, m1, m2, m2's detail
  EXPECT_EQ(rows[1].rfind("m1", 0), 0u);
  EXPECT_EQ(rows[2].rfind("m2    postcopy", 0), 0u) << rows[2];
  EXPECT_EQ(rows[3].rfind("      hybrid: 60% pre-copy, 3 blocks remote", 0), 0u) << rows[3];
}

TEST(FormatTest, IncomingTable) {
  EXPECT_EQ(IncomingTable(json::array()), "no incoming copies\n");
  EXPECT_EQ(IncomingTable(json("garbage")), "no incoming copies\n");
  json incoming = json::array({{{"image", "vm1.img"},
                                {"state", "postcopy"},
                                {"blocks_total", 2048},
                                {"blocks_remote", 100},
                                {"bytes_pulled", 4000000},
                                {"bytes_fetched_on_demand", 500000},
                                {"fetches", 7},
                                {"fetch_latency_ms", {{"p50", 0.5}, {"p99", 3}}}},
                               {{"image", "vm2.img"}, {"state", "failed"}, {"reason", "source lost"}},
                               {{"image", 5}}});
  std::string table = IncomingTable(incoming);
  EXPECT_EQ(table.rfind("IMAGE", 0), 0u) << table;
  EXPECT_NE(table.find("vm1.img                 postcopy   100 of 2048       4.00 MB   500 KB in 7         "
                       "p50/p99 0.5/3.0 ms\n"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("vm2.img                 failed     0 of 0"), std::string::npos) << table;
  EXPECT_NE(table.find("(source lost)\n"), std::string::npos) << table;
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
