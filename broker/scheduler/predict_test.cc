// `migratefs-scheduler predict`: the profile format (both forms of counts, several
// images, refusals naming the field) and the command itself (table, JSON, exit codes).
#include "broker/scheduler/predict.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace migratefs::scheduler {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

json Profile() {
  return {{"name", "vm1.img"}, {"image_bytes", 64 * 524288}, {"window_s", 10}, {"writes", {{3, 20}, {7, 5}}}};
}

TEST(PredictProfile, ParsesSparseDenseAndSeveralImages) {
  auto one = ParseProfiles(Profile(), "p.json");
  ASSERT_TRUE(one) << one.error().message;
  ASSERT_EQ(one.value().size(), 1u);
  const auto& im = one.value()[0];
  EXPECT_EQ(im.name, "vm1.img");
  EXPECT_EQ(im.image_bytes, 64u * 524288);
  EXPECT_EQ(im.block_bytes, 524288u);  // the default
  ASSERT_EQ(im.writes.size(), 2u);
  EXPECT_EQ(im.writes[1].block, 7u);
  EXPECT_EQ(im.writes[1].count, 5);
  EXPECT_FALSE(im.data_known);

  json dense = Profile();
  dense["writes"] = {0, 4, 0, 2};
  dense["reads"] = {{1, 3}};
  dense["data"] = {{0, 10}};
  dense["write_bytes"] = 65536;
  auto d = ParseProfiles({{"images", {Profile(), dense}}}, "p.json");
  ASSERT_TRUE(d) << d.error().message;
  ASSERT_EQ(d.value().size(), 2u);
  const auto& b = d.value()[1];
  ASSERT_EQ(b.writes.size(), 2u);  // zeros of the dense form are dropped
  EXPECT_EQ(b.writes[0].block, 1u);
  EXPECT_EQ(b.writes[1].block, 3u);
  EXPECT_EQ(b.writes[1].count, 2);
  EXPECT_EQ(b.reads.size(), 1u);
  EXPECT_TRUE(b.data_known);
  EXPECT_EQ(b.data[0].count, 10u);
  EXPECT_EQ(b.write_bytes, 65536);
}

TEST(PredictProfile, RefusalsNameTheField) {
  struct Case {
    json doc;
    std::string names;
  };
  auto with = [](const char* key, json v) {
    json p = Profile();
    p[key] = std::move(v);
    return p;
  };
  json no_window = Profile();
  no_window.erase("window_s");
  json no_writes = Profile();
  no_writes.erase("writes");
  for (const Case& c : {Case{with("image_bytes", -1), "p.json: profile.image_bytes"},
                        Case{with("image_bytes", 1.5), "profile.image_bytes"},
                        Case{with("block_bytes", "big"), "profile.block_bytes"},
                        Case{no_window, "\"window_s\" is missing"},
                        Case{with("window_s", "1m"), "\"window_s\" must be a number"},
                        Case{no_writes, "profile.writes is missing"},
                        Case{with("writes", {{1, 2, 3}}), "profile.writes[0] must be [block, count]"},
                        Case{with("writes", {{-1, 2}}), "profile.writes[0]: the block"},
                        Case{with("writes", {{1, -2}}), "profile.writes[0]: the count"},
                        Case{with("reads", "many"), "profile.reads must be an array"},
                        Case{with("data", {{0}}), "profile.data[0]"},
                        Case{with("colour", 1), "\"colour\" is not a known field"},
                        Case{json{{"images", json::array()}}, "images must be a non-empty array"},
                        Case{json{{"images", {Profile(), 3}}}, "images[1] must be an object"},
                        Case{json{{"images", {Profile()}}, {"x", 1}}, "holds nothing else"}}) {
    auto r = ParseProfiles(c.doc, "p.json");
    ASSERT_FALSE(r) << c.names;
    EXPECT_NE(r.error().message.find(c.names), std::string::npos) << c.names << ": " << r.error().message;
  }
}

struct Outcome {
  int exit_code = -1;
  std::string output;
};

Outcome Predict(const std::string& args) {
  Outcome out;
  FILE* p = ::popen((std::string(MIGRATEFS_SCHEDULER_BINARY) + " predict " + args + " 2>&1").c_str(), "r");
  if (!p) return out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), p)) out.output.append(buf, n);
  int status = ::pclose(p);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

class PredictCli : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/predict-cli-XXXXXX";
    dir_ = ::mkdtemp(templ);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
    return dir_ + "/" + name;
  }
  std::string dir_;
};

// 256 MiB, 5 % of the blocks rewritten twice a second: pre-copy cannot converge, S = 95
// (the cold blocks) can.
std::string HotSpot() {
  json writes = json::array();
  for (int b = 100; b < 125; ++b) writes.push_back({b, 120});
  return json{{"image_bytes", 512 * 524288}, {"window_s", 60}, {"writes", writes}}.dump();
}

TEST_F(PredictCli, PrintsTheTableAndTheRecommendation) {
  Outcome out = Predict("--profile " + Write("p.json", HotSpot()) + " --net-kbps 5000 --rtt-ms 5");
  ASSERT_EQ(out.exit_code, 0) << out.output;
  for (const char* want : {"T_s", "U_s", "fetches", "stall_s", "converges", "\n0 ", "\n50 ", "\n100 ", "pre-copy",
                           "recommended S = 95 (hybrid): pre-copy does not converge"})
    EXPECT_NE(out.output.find(want), std::string::npos) << want << "\n" << out.output;
}

TEST_F(PredictCli, JsonRowsAndDeadline) {
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

TEST_F(PredictCli, SeveralProfilesAreOneVm) {
  const std::string a = Write("a.json", HotSpot());
  const std::string b = Write("b.json", json{{"images", {{{"image_bytes", 524288}, {"window_s", 1}, {"writes", json::array()}}}}}.dump());
  Outcome out = Predict("--profile " + a + " --profile " + b + " --net-kbps 5000 --json");
  ASSERT_EQ(out.exit_code, 0) << out.output;
  json doc = json::parse(out.output, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << out.output;
  EXPECT_NEAR(doc["rows"][0]["u_s"].get<double>(), 513 * 524288 / 5e6, 1e-6);
}

TEST_F(PredictCli, BadInputNamesTheOptionAndExits2) {
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
}  // namespace migratefs::scheduler
