// The broker and scheduler binaries refuse malformed input files with exit status 2
// and a message that names the file and the offending field (no root needed); the
// scheduler's `rates` command (seed 000) reproduces the paper's table and names bad options.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Outcome {
  int exit_code = -1;
  std::string output;
};

Outcome RunCommand(const std::string& command) {
  Outcome out;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), p)) out.output.append(buf, n);
  int status = ::pclose(p);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

class BrokerCli : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/broker-cli-XXXXXX";
    dir_ = ::mkdtemp(templ);
    key_ = Write("key", "0123456789abcdef0123456789\n");
    topology_ = Write("topology.toml",
                      "[[switch]]\nname = \"sw\"\n"
                      "[[host]]\nname = \"a\"\nswitch = \"sw\"\nbroker = \"127.0.0.1:1\"\nmigratefs = \"127.0.0.1:2\"\n"
                      "[[host]]\nname = \"b\"\nswitch = \"sw\"\nbroker = \"127.0.0.1:3\"\nmigratefs = \"127.0.0.1:4\"\n");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
    return dir_ + "/" + name;
  }
  Outcome Broker(const std::string& config_text) {
    return RunCommand(std::string(MIGRATEFS_BROKER_BINARY) + " --config " + Write("broker.toml", config_text));
  }
  Outcome Scheduler(const std::string& tasks_text, const std::string& topology = "") {
    return RunCommand(std::string(MIGRATEFS_SCHEDULER_BINARY) + " submit --keyfile " + key_ + " --tasks " +
               Write("tasks.toml", tasks_text) + " --topology " + (topology.empty() ? topology_ : topology));
  }
  std::string dir_, key_, topology_;
};

const char* kTask = "[[task]]\nvm = \"vm1\"\ndisks = [\"vm1.img\"]\nsource = \"a\"\ntarget = \"b\"\ndeadline = 60\n";

TEST_F(BrokerCli, BrokerNamesTheBadField) {
  std::string base = "host = \"a\"\ncontrol_socket = \"/nonexistent/c.sock\"\nsocket = \"" + dir_ + "/b.sock\"\n";
  struct Case {
    std::string text, names;
  };
  for (const Case& c : {Case{base, "\"period\" is missing"},
                        Case{base + "period = \"1s\"\n", "\"period\" must be a number"},
                        Case{base + "period = 1\ndanger = 500\nwarning = 400\n", "\"warning\""},
                        Case{base + "period = 1\n[[link]]\niface = \"eth0\"\ncapacity_kbps = -5\n",
                             "\"link[0].capacity_kbps\""},
                        Case{base + "period = 1\nhypervisor_command = \"virsh {domain}\"\n", "{domain}"},
                        Case{base + "period = 1\nlisten = \"10.0.0.1:7100\"\n", "\"keyfile\""},
                        Case{base + "period = 1\nkeyfile = \"/nonexistent/key\"\n", "\"keyfile\""},
                        Case{base + "period = 1\nperod = 2\n", "\"perod\""},
                        Case{base + "period = 1\n[[link]]\niface = \"eth0\"\ncapacity_kbps = 1000\n"
                                    "workload_max_kbps = 1500\n",
                             "\"link[0].workload_max_kbps\" must not exceed capacity_kbps"},
                        Case{base + "period = 1\n[marking.high]\ndscp = \"AF99\"\n", "\"marking.high.dscp\""},
                        Case{"host = [\n", "broker.toml:"}}) {
    Outcome out = Broker(c.text);
    EXPECT_EQ(out.exit_code, 2) << c.text << "\n" << out.output;
    EXPECT_NE(out.output.find(c.names), std::string::npos) << out.output;
    EXPECT_NE(out.output.find("broker.toml"), std::string::npos) << out.output;
  }
  Outcome missing = RunCommand(std::string(MIGRATEFS_BROKER_BINARY) + " --config " + dir_ + "/none.toml");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("none.toml"), std::string::npos) << missing.output;
}

TEST_F(BrokerCli, SchedulerNamesTheBadField) {
  struct Case {
    std::string text, names;
  };
  for (const Case& c : {Case{"", "\"task\" is missing"},
                        Case{std::string(kTask) + "colour = \"red\"\n", "task[0]: field \"colour\""},
                        Case{"[[task]]\nvm = \"vm1\"\nsource = \"a\"\ntarget = \"b\"\ndeadline = 60\n",
                             "task[0]: field \"disks\""},
                        Case{std::string(kTask) + kTask, "task[1]: field \"vm\""},
                        Case{"[[task]]\nvm = \"x\"\ndisks = [\"x\"]\nsource = \"a\"\ntarget = \"z\"\ndeadline = 1\n",
                             "task[0]: field \"target\" names \"z\""},
                        Case{"[[task]]\nvm = \"x\"\ndisks = [\"x\"]\nsource = \"a\"\ntarget = \"b\"\ndeadline = -1\n",
                             "task[0]: field \"deadline\""},
                        Case{std::string(kTask) + "priority = \"urgent\"\n", "task[0]: field \"priority\""},
                        Case{"[[task]\n", "tasks.toml:1"}}) {
    Outcome out = Scheduler(c.text);
    EXPECT_EQ(out.exit_code, 2) << c.text << "\n" << out.output;
    EXPECT_NE(out.output.find(c.names), std::string::npos) << out.output;
    EXPECT_NE(out.output.find("tasks.toml"), std::string::npos) << out.output;
  }
  std::string bad_topology = Write("bad-topology.toml", "[[switch]]\nname = \"sw\"\n[[host]]\nname = \"a\"\nswitch = \"sw2\"\n"
                                                        "broker = \"h:1\"\nmigratefs = \"h:2\"\n");
  Outcome out = Scheduler(kTask, bad_topology);
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_NE(out.output.find("host[0]: field \"switch\""), std::string::npos) << out.output;
  EXPECT_NE(out.output.find("bad-topology.toml"), std::string::npos) << out.output;
}

TEST_F(BrokerCli, SchedulerPlanPrintsPathsAndSharedSections) {
  Outcome out = RunCommand(std::string(MIGRATEFS_SCHEDULER_BINARY) + " plan --tasks " +
                    Write("tasks.toml", std::string(kTask) +
                                            "[[task]]\nvm = \"vm2\"\ndisks = [\"vm2.img\"]\nsource = \"a\"\n"
                                            "target = \"b\"\ndeadline = 60\n") +
                    " --topology " + topology_);
  EXPECT_EQ(out.exit_code, 0) << out.output;
  EXPECT_NE(out.output.find("\"a-sw\""), std::string::npos) << out.output;
  EXPECT_NE(out.output.find("\"shared_sections\""), std::string::npos) << out.output;
}

TEST_F(BrokerCli, SchedulerWithUnreachableBrokersReportsAndExits1) {
  Outcome out = RunCommand(std::string(MIGRATEFS_SCHEDULER_BINARY) + " submit --keyfile " + key_ + " --tasks " +
                    Write("tasks.toml", kTask) + " --topology " + topology_ + " --rpc-timeout 0.5 --timeout 2");
  EXPECT_EQ(out.exit_code, 1) << out.output;
  EXPECT_NE(out.output.find("\"not_submitted\""), std::string::npos) << out.output;
}

// `rates` (seed 000, eq. 6-8): the paper's 5-VM row with n = 3, JSON and text forms.
std::vector<double> JsonRates(const std::string& out) {
  std::vector<double> rates;
  size_t at = out.find("\"rates_mbps\":[");
  if (at == std::string::npos) return rates;
  const char* p = out.c_str() + at + 14;
  while (*p && *p != ']') {
    char* end = nullptr;
    rates.push_back(std::strtod(p, &end));
    if (end == p) break;
    p = *end == ',' ? end + 1 : end;
  }
  return rates;
}

std::string Rates(const std::string& args) { return std::string(MIGRATEFS_SCHEDULER_BINARY) + " rates " + args; }

TEST(SchedulerRates, ReproducesTheSeedTable) {
  Outcome out = RunCommand(Rates("--capacity-mbps 125 --dirty-mbps 10.24 --rounds 3 "
                                 "--sizes-mb 609.86,617.66,859.44,805.48,576.72 --json"));
  ASSERT_EQ(out.exit_code, 0) << out.output;
  std::vector<double> rates = JsonRates(out.output);
  const std::vector<double> seed = {24.02, 24.12, 26.92, 26.34, 23.58};
  ASSERT_EQ(rates.size(), seed.size()) << out.output;
  for (size_t j = 0; j < seed.size(); ++j) EXPECT_NEAR(rates[j], seed[j], 0.5) << out.output;
  EXPECT_NE(out.output.find("\"total_s\":226.8"), std::string::npos) << out.output;

  Outcome text = RunCommand(Rates("--capacity-mbps 125 --dirty-mbps 10.24 --rounds 3 --sizes-mb 500.02,479.92,904.72"));
  ASSERT_EQ(text.exit_code, 0) << text.output;
  for (const char* want : {"rate_MB/s", "38.54", "37.94", "48.52", "total_s 58.402"})
    EXPECT_NE(text.output.find(want), std::string::npos) << want << "\n" << text.output;
}

TEST(SchedulerRates, TakesOneDirtyRatePerMigration) {
  Outcome out = RunCommand(Rates("--capacity-mbps 100 --dirty-mbps 5,0,0 --rounds 2 --sizes-mb 0,400,100 --json"));
  ASSERT_EQ(out.exit_code, 0) << out.output;
  std::vector<double> rates = JsonRates(out.output);
  ASSERT_EQ(rates.size(), 3u) << out.output;
  EXPECT_NEAR(rates[0], 5, 1e-9);  // nothing left: its dirty rate
  EXPECT_NEAR(rates[1], 2 * rates[2], 1e-6);  // D = 0: r ~ sqrt(V)
  EXPECT_NEAR(rates[0] + rates[1] + rates[2], 100, 1e-6);
}

TEST(SchedulerRates, BadInputNamesTheFieldAndExits2) {
  const std::string ok_d = "--dirty-mbps 10 ", ok_n = "--rounds 3 ", ok_v = "--sizes-mb 100,200 ", ok_r = "--capacity-mbps 125 ";
  struct Case {
    std::string args, names;
  };
  for (const Case& c : {Case{ok_r + "--dirty-mbps 40,50 " + ok_n + "--sizes-mb 1,2,3", "--dirty-mbps: 2 values for 3"},
                        Case{"--capacity-mbps 100 --dirty-mbps 50 " + ok_n + ok_v, "--dirty-mbps: no feasible allocation"},
                        Case{"--capacity-mbps 100 --dirty-mbps 60,50 " + ok_n + ok_v, "no feasible allocation"},
                        Case{"--capacity-mbps 0 " + ok_d + ok_n + ok_v, "--capacity-mbps"},
                        Case{"--capacity-mbps -1 " + ok_d + ok_n + ok_v, "--capacity-mbps"},
                        Case{"--capacity-mbps fast " + ok_d + ok_n + ok_v, "--capacity-mbps"},
                        Case{ok_r + ok_d + ok_n + "--sizes-mb 100,-200", "--sizes-mb: value 2"},
                        Case{ok_r + ok_d + ok_n + "--sizes-mb 100,,200", "--sizes-mb: value 2 is empty"},
                        Case{ok_r + ok_d + ok_n + "--sizes-mb ,", "--sizes-mb: value 1 is empty"},
                        Case{ok_r + "--dirty-mbps -3 " + ok_n + ok_v, "--dirty-mbps: value 1"},
                        Case{ok_r + ok_d + "--rounds 0 " + ok_v, "--rounds"},
                        Case{ok_r + ok_d + "--rounds 1.5 " + ok_v, "--rounds"}}) {
    Outcome out = RunCommand(Rates(c.args + " --json"));
    EXPECT_EQ(out.exit_code, 2) << c.args << "\n" << out.output;
    EXPECT_NE(out.output.find(c.names), std::string::npos) << c.args << "\n" << out.output;
    EXPECT_EQ(out.output.find("rates_mbps"), std::string::npos) << out.output;
  }
  Outcome missing = RunCommand(Rates(ok_r + ok_d + ok_n));
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("--sizes-mb"), std::string::npos) << missing.output;
}

// `migratefs-scheduler predict` (issue 10, seed 002's model): table, JSON, deadline,
// several profiles, and bad input named with exit status 2.
using SchedulerPredictCli = BrokerCli;

Outcome Predict(const std::string& args) {
  return RunCommand(std::string(MIGRATEFS_SCHEDULER_BINARY) + " predict " + args);
}

// 256 MiB, 5 % of the blocks rewritten twice a second: pre-copy cannot converge, S = 95
// (the cold blocks) can.
std::string HotSpot() {
  json writes = json::array();
  for (int b = 100; b < 125; ++b) writes.push_back({b, 120});
  return json{{"image_bytes", 512 * 524288}, {"window_s", 60}, {"writes", writes}}.dump();
}

TEST_F(SchedulerPredictCli, PrintsTheTableAndTheRecommendation) {
  Outcome out = Predict("--profile " + Write("p.json", HotSpot()) + " --net-kbps 5000 --rtt-ms 5");
  ASSERT_EQ(out.exit_code, 0) << out.output;
  for (const char* want : {"T_s", "U_s", "fetches", "stall_s", "converges", "\n0 ", "\n50 ", "\n100 ", "pre-copy",
                           "recommended S = 95 (hybrid): pre-copy does not converge"})
    EXPECT_NE(out.output.find(want), std::string::npos) << want << "\n" << out.output;
}

TEST_F(SchedulerPredictCli, JsonRowsAndDeadline) {
  const std::string profile = Write("p.json", HotSpot());
  Outcome out = Predict("--profile " + profile + " --net-kbps 5000 --step 25 --json");
  ASSERT_EQ(out.exit_code, 0) << out.output;
  json doc = json::parse(out.output, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << out.output;
  ASSERT_EQ(doc["rows"].size(), 5u);  // 0, 25, 50, 75, 100
  const double size = 512.0 * 524288;
  for (const json& r : doc["rows"]) {
    EXPECT_NEAR(r["u_s"].get<double>(), size * (1 - r["s"].get<double>() / 100) / 5e6, 1e-6) << r.dump();
    EXPECT_TRUE(r.contains("fetches") && r.contains("stall_s") && r.contains("converges") && r.contains("t_s"));
  }
  EXPECT_FALSE(doc["precopy"]["converges"].get<bool>());
  EXPECT_EQ(doc["recommended_s"].get<double>(), 75);  // the best of 0, 25, 50, 75 that converges
  EXPECT_TRUE(doc["deadline_met"].get<bool>());

  Outcome late = Predict("--profile " + profile + " --net-kbps 5000 --deadline-s 10 --json");
  EXPECT_EQ(late.exit_code, 1) << late.output;
  EXPECT_NE(late.output.find("\"deadline_met\":false"), std::string::npos) << late.output;
}

TEST_F(SchedulerPredictCli, SeveralProfilesAreOneVm) {
  const std::string a = Write("a.json", HotSpot());
  const std::string b = Write("b.json", json{{"images", {{{"image_bytes", 524288}, {"window_s", 1}, {"writes", json::array()}}}}}.dump());
  Outcome out = Predict("--profile " + a + " --profile " + b + " --net-kbps 5000 --json");
  ASSERT_EQ(out.exit_code, 0) << out.output;
  json doc = json::parse(out.output, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << out.output;
  EXPECT_NEAR(doc["rows"][0]["u_s"].get<double>(), 513 * 524288 / 5e6, 1e-6);
}

TEST_F(SchedulerPredictCli, BadInputNamesTheOptionAndExits2) {
  const std::string ok = Write("p.json", HotSpot());
  const std::string empty = Write("e.json", R"({"image_bytes":0,"window_s":1,"writes":[]})");
  const std::string outside = Write("o.json", R"({"image_bytes":1048576,"window_s":1,"writes":[[5,1]]})");
  const std::string broken = Write("b.json", "{");
  struct Case {
    std::string args, names;
  };
  for (const Case& c : {Case{"--profile " + ok + " --net-kbps 0", "--net-kbps"},
                        Case{"--profile " + ok + " --net-kbps -5", "--net-kbps"},
                        Case{"--profile " + ok + " --net-kbps fast", "--net-kbps"},
                        Case{"--profile " + ok + " --net-kbps 5000 --rtt-ms -1", "--rtt-ms"},
                        Case{"--profile " + ok + " --net-kbps 5000 --deadline-s 0", "--deadline-s"},
                        Case{"--profile " + ok + " --net-kbps 5000 --step 0", "--step"},
                        Case{"--profile " + ok + " --net-kbps 5000 --step 150", "--step"},
                        Case{"--profile " + empty + " --net-kbps 5000", "images[0].image_bytes: the image is empty"},
                        Case{"--profile " + outside + " --net-kbps 5000", "writes[0]: block 5 is outside"},
                        Case{"--profile " + broken + " --net-kbps 5000", "malformed JSON"},
                        Case{"--profile " + dir_ + "/none.json --net-kbps 5000", "cannot be read"}}) {
    Outcome out = Predict(c.args + " --json");
    EXPECT_EQ(out.exit_code, 2) << c.args << "\n" << out.output;
    EXPECT_NE(out.output.find(c.names), std::string::npos) << c.args << "\n" << out.output;
    EXPECT_EQ(out.output.find("\"rows\""), std::string::npos) << out.output;
  }
  Outcome missing = Predict("--profile " + ok);
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("--net-kbps"), std::string::npos) << missing.output;
}

}  // namespace
