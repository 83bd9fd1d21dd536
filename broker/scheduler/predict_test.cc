// `migratefs-scheduler predict`: the profile format (both forms of counts, several
// images, refusals naming the field). The command itself (table, JSON, exit codes) is
// tested with the other scheduler commands in tests/broker_cli_test.cc.
#include "broker/scheduler/predict.h"

#include <string>

#include <gtest/gtest.h>

namespace migratefs::scheduler {
namespace {

using nlohmann::json;

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

// What the daemon's `profile` answers (broker/policy/predict_format.h ProfilesJson) is a
// profile file the scheduler reads back unchanged.
TEST(PredictProfile, DaemonProfileAnswerReadsBack) {
  policy::ImageProfile im;
  im.name = "vm1.img";
  im.image_bytes = 64 * 524288 + 100;
  im.block_bytes = 65536;
  im.window_s = 2.25;
  im.writes = {{3, 20}, {700, 5}};
  im.data_known = true;
  im.data = {{0, 10}, {700, 1}};
  im.write_bytes = 6144;
  policy::ImageProfile other = im;
  other.name = "vm1-data.img";
  other.data_known = false;
  other.data.clear();
  auto back = ParseProfiles(policy::ProfilesJson({im, other}), "answer");
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back.value().size(), 2u);
  const auto& b = back.value()[0];
  EXPECT_EQ(b.name, "vm1.img");
  EXPECT_EQ(b.image_bytes, im.image_bytes);
  EXPECT_EQ(b.block_bytes, 65536u);
  EXPECT_EQ(b.window_s, 2.25);
  ASSERT_EQ(b.writes.size(), 2u);
  EXPECT_EQ(b.writes[1].block, 700u);
  EXPECT_EQ(b.writes[1].count, 5);
  EXPECT_TRUE(b.data_known);
  ASSERT_EQ(b.data.size(), 2u);
  EXPECT_EQ(b.data[1].first, 700u);
  EXPECT_EQ(b.write_bytes, 6144);
  EXPECT_FALSE(back.value()[1].data_known);
  EXPECT_EQ(policy::SPercentSteps(5).size(), 21u);
  EXPECT_EQ(policy::SPercentSteps(30), (std::vector<double>{0, 30, 60, 90, 100}));
}

}  // namespace
}  // namespace migratefs::scheduler
