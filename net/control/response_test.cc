#include "net/control/response.h"

#include "broker/policy/predict_format.h"

#include <gtest/gtest.h>

#include "net/control/dispatch.h"
#include "net/control/fake_migration_service.h"

namespace migratefs::control {
namespace {

using nlohmann::json;

TEST(ResponseTest, OkAnswerEchoesTag) {
  json answer = OkAnswer({{"id", "m1"}}, json("abc"));
  EXPECT_EQ(answer, json::parse(R"({"ok":true,"id":"m1","req":"abc"})"));
  EXPECT_EQ(OkAnswer(nullptr, std::nullopt), json::parse(R"({"ok":true})"));
}

TEST(ResponseTest, ErrorAnswerShape) {
  json answer = ErrorAnswer(MakeError(errc::kUnknownId, "no m9"), json(3));
  EXPECT_EQ(answer,
            json::parse(R"({"ok":false,"error":{"code":"unknown_id","message":"no m9"},"req":3})"));
}

TEST(ResponseTest, ProgressHasEveryField) {
  Progress p;
  p.phase = "dirty";
  p.kbps = 1.5;
  p.bytes_left = 10;
  p.blocks_left = 2;
  p.dirty_blocks = 3;
  p.dirty_kbps = 4;
  p.eta_s = 12.5;
  p.network_limit_kbps = 20000;
  json fields = ProgressFields(p);
  for (const char* key : {"phase", "pause_reason", "kbps", "bytes_total", "bytes_sent",
                          "bytes_mirrored", "bytes_left", "blocks_left", "dirty_blocks",
                          "dirty_kbps", "network_kbps", "disk_kbps", "eta_s",
                          "network_limit_kbps", "disk_limit_kbps"}) {
    EXPECT_TRUE(fields.contains(key)) << key;
  }
  EXPECT_EQ(fields["phase"], "dirty");
  EXPECT_EQ(fields["eta_s"], 12.5);
  EXPECT_EQ(fields["network_limit_kbps"], 20000);
}

TEST(ResponseTest, ProgressShowsTheMarking) {
  Progress p;
  json unmarked = ProgressFields(p);
  EXPECT_TRUE(unmarked.contains("dscp") && unmarked["dscp"].is_null()) << unmarked.dump();
  EXPECT_TRUE(unmarked.contains("so_priority") && unmarked["so_priority"].is_null()) << unmarked.dump();
  p.dscp = 34;
  p.so_priority = 6;
  json marked = ProgressFields(p);
  EXPECT_EQ(marked["dscp"], "AF41");
  EXPECT_EQ(marked["so_priority"], 6);
  p.dscp = 13;  // no name
  EXPECT_EQ(ProgressFields(p)["dscp"], "13");
}

TEST(ResponseTest, ProgressShowsTheCopyMode) {
  Progress p;
  json precopy = ProgressFields(p);
  EXPECT_EQ(precopy["mode"], "precopy");
  for (const char* key : {"precopy_pct", "data_blocks", "blocks_remote", "bytes_pulled", "bytes_fetched_on_demand",
                          "fetch_latency_ms"}) {
    EXPECT_FALSE(precopy.contains(key)) << key;  // hybrid only
  }
  p.mode = "hybrid";
  p.precopy_pct = 40;
  p.data_blocks = 1000;
  p.blocks_remote = 600;
  p.bytes_pulled = 1 << 20;
  p.bytes_fetched_on_demand = 524288;
  p.fetch_latency_p50_ms = 1.5;
  p.fetch_latency_p99_ms = 12.25;
  json hybrid = ProgressFields(p);
  EXPECT_EQ(hybrid["mode"], "hybrid");
  EXPECT_EQ(hybrid["precopy_pct"], 40);
  EXPECT_EQ(hybrid["data_blocks"], 1000);
  EXPECT_EQ(hybrid["blocks_remote"], 600);
  EXPECT_EQ(hybrid["bytes_pulled"], 1 << 20);
  EXPECT_EQ(hybrid["bytes_fetched_on_demand"], 524288);
  EXPECT_EQ(hybrid["fetch_latency_ms"], json::parse(R"({"p50":1.5,"p99":12.25})"));
  EXPECT_EQ(hybrid["phase"], "");  // and everything else is still there
  EXPECT_TRUE(hybrid.contains("bytes_left"));
}

TEST(ResponseTest, IncomingListsCopies) {
  IncomingInfo postcopy{"vm1.img", "postcopy", "", 2048, 100, 4 << 20, 1 << 20, 2, 0.5, 3};
  IncomingInfo failed;
  failed.image = "vm2.img";
  failed.state = "failed";
  failed.reason = "source lost for 600 s";
  EXPECT_EQ(IncomingFields({postcopy, failed}), json::parse(R"({"incoming":[
      {"image":"vm1.img","state":"postcopy","blocks_total":2048,"blocks_remote":100,"bytes_pulled":4194304,
       "bytes_fetched_on_demand":1048576,"fetches":2,"fetch_latency_ms":{"p50":0.5,"p99":3.0}},
      {"image":"vm2.img","state":"failed","reason":"source lost for 600 s","blocks_total":0,"blocks_remote":0,
       "bytes_pulled":0,"bytes_fetched_on_demand":0,"fetches":0,"fetch_latency_ms":{"p50":0.0,"p99":0.0}}]})"));
  EXPECT_EQ(IncomingFields({}), json::parse(R"({"incoming":[]})"));
}

TEST(ResponseTest, VerifyListsRanges) {
  VerifyReport report{false, 8, {{"vm1.img", 524288, 524288}}};
  EXPECT_EQ(VerifyFields(report), json::parse(R"({"identical":false,"blocks_compared":8,
      "mismatches":[{"image":"vm1.img","offset":524288,"length":524288}]})"));
}

TEST(ResponseTest, ToLineIsOneLineEvenWithBadUtf8) {
  std::string line = ToLine(ErrorAnswer(MakeError(errc::kNotFound, "no \xff\n file"), {}));
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  EXPECT_NO_THROW(json::parse(line));
}

// One request line, parsed and run against `service`: the answer.
json ParseAndExecute(FakeMigrationService& service, const std::string& line) {
  ParsedRequest parsed = ParseRequest(line);
  EXPECT_TRUE(parsed.command.ok()) << line;
  return Execute(parsed.command.value(), service, parsed.tag);
}

TEST(DispatchTest, RoutesEveryOpToTheService) {
  FakeMigrationService service;
  auto run = [&](const std::string& line) { return ParseAndExecute(service, line); };
  EXPECT_EQ(run(R"({"op":"start","images":["a.img"],"target":"h:1"})")["id"], "m1");
  EXPECT_EQ(run(R"({"op":"set_network_limit","id":"m1","kbps":7})")["ok"], true);
  EXPECT_EQ(run(R"({"op":"set_disk_limit","id":"m1","kbps":8})")["ok"], true);
  json progress = run(R"({"op":"query_progress","id":"m1","what":"disk"})");
  EXPECT_EQ(progress["phase"], "bulk");
  EXPECT_EQ(progress["network_limit_kbps"], 7);
  EXPECT_EQ(progress["disk_limit_kbps"], 8);
  EXPECT_EQ(run(R"({"op":"query_completion","id":"m1"})")["completed"], false);
  EXPECT_EQ(run(R"({"op":"verify","id":"m1"})")["identical"], true);
  EXPECT_EQ(run(R"({"op":"finish","id":"m1"})")["ok"], true);
  EXPECT_EQ(run(R"({"op":"release","id":"m1"})")["ok"], true);
  EXPECT_EQ(run(R"({"op":"cancel","id":"m1","keep_partial":true})")["ok"], true);
  EXPECT_EQ(run(R"({"op":"list"})")["migrations"].size(), 1u);
  EXPECT_EQ(run(R"({"op":"status","id":"m1"})")["images"], json::array({"a.img"}));
  EXPECT_TRUE(run(R"({"op":"status"})").contains("version"));
  json unknown = run(R"({"op":"finish","id":"m9","req":"x"})");
  EXPECT_EQ(unknown["error"]["code"], "unknown_id");
  EXPECT_EQ(unknown["req"], "x");
  EXPECT_EQ(run(R"({"op":"incoming"})"), json::parse(R"({"ok":true,"incoming":[]})"));
  EXPECT_EQ(service.calls(),
            (std::vector<std::string>{"Start a.img -> h:1 net=0 disk=0", "SetNetworkLimit m1 7",
                                      "SetDiskLimit m1 8", "QueryProgress m1 disk",
                                      "QueryCompletion m1", "QueryProgress m1 network", "Verify m1",
                                      "Finish m1", "Release m1", "Cancel m1 keep_partial", "List",
                                      "GetStatus m1", "List", "Finish m9", "Incoming"}));
}

TEST(ResponseTest, ProfileIsTheSchedulersProfileFormat) {
  policy::ImageProfile im;
  im.name = "vm1.img";
  im.image_bytes = 8 << 19;
  im.window_s = 2;
  im.writes = {{3, 5}, {7, 1}};
  im.data_known = true;
  im.data = {{0, 4}, {7, 1}};
  im.write_bytes = 8192;
  json fields = ProfileFields({im});
  EXPECT_EQ(fields, json::parse(R"({"profile":{"images":[{"name":"vm1.img","image_bytes":4194304,)"
                                R"("block_bytes":524288,"window_s":2.0,"writes":[[3,5.0],[7,1.0]],)"
                                R"("data":[[0,4],[7,1]],"write_bytes":8192.0}]}})"));
}

TEST(ResponseTest, PredictCarriesTheTableAndWhatWasAsked) {
  policy::ImageProfile im;
  im.image_bytes = 64 << 19;
  im.window_s = 10;
  im.writes = {{3, 100}};
  policy::PredictInput in;
  in.images = {im};
  in.net_bps = 5e6;
  in.rtt_s = 0.005;
  in.s_percent = policy::SPercentSteps(25);
  auto p = policy::Predict(in);
  ASSERT_TRUE(p.ok()) << p.error().message;
  PredictRequest req;
  req.images = {"vm1.img"};
  req.net_kbps = 5000;
  req.step = 25;
  json fields = PredictFields(req, p.value());
  ASSERT_EQ(fields["rows"].size(), 5u);  // 0, 25, 50, 75, 100
  for (const char* key : {"s", "t_s", "u_s", "fetches", "fetch_stall_s", "stall_s", "converges", "meets_deadline",
                          "cost", "p_converge", "mirror_stall_s"})
    EXPECT_TRUE(fields["rows"][0].contains(key)) << key;
  EXPECT_EQ(fields["rows"][1]["s"], 25.0);
  EXPECT_EQ(fields["precopy"]["s"], 100.0);
  EXPECT_EQ(fields["recommended_s"], p.value().recommended_s);
  EXPECT_EQ(fields["reason"], p.value().reason);
  EXPECT_EQ(fields["net_kbps"], 5000);
  EXPECT_EQ(fields["images"], json::array({"vm1.img"}));
  // What a client reads back is what was computed.
  auto back = policy::PredictionFromJson(fields);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back.value().rows.size(), 5u);
  EXPECT_DOUBLE_EQ(back.value().rows[2].total_s, p.value().rows[2].total_s);
  EXPECT_EQ(back.value().precopy.converges, p.value().precopy.converges);
  EXPECT_EQ(policy::PredictionText(in, back.value()), policy::PredictionText(in, p.value()));
}

TEST(DispatchTest, ProfileThenPredict) {
  FakeMigrationService service;
  auto run = [&](const std::string& line) { return ParseAndExecute(service, line); };
  json early = run(R"({"op":"predict","images":["vm1.img"],"net_kbps":5000})");
  EXPECT_EQ(early["error"]["code"], "wrong_state");
  EXPECT_NE(early["error"]["message"].get<std::string>().find("run profile first"), std::string::npos);
  json profile = run(R"({"op":"profile","images":["vm1.img"],"seconds":2,"req":7})");
  EXPECT_EQ(profile["ok"], true);
  EXPECT_EQ(profile["req"], 7);
  ASSERT_EQ(profile["profile"]["images"].size(), 1u);
  EXPECT_EQ(profile["profile"]["images"][0]["name"], "vm1.img");
  EXPECT_EQ(profile["profile"]["images"][0]["writes"], json::parse("[[3,20.0]]"));
  json predicted = run(R"({"op":"predict","images":["vm1.img"],"net_kbps":5000,"deadline_s":60})");
  EXPECT_EQ(predicted["ok"], true) << predicted.dump();
  EXPECT_EQ(predicted["rows"].size(), 21u);
  EXPECT_TRUE(predicted.contains("recommended_s"));
  EXPECT_EQ(predicted["deadline_s"], 60.0);
  EXPECT_EQ(run(R"({"op":"profile","images":["missing.img"],"seconds":2})")["error"]["code"], "not_found");
  EXPECT_EQ(service.calls(), (std::vector<std::string>{"Predict vm1.img net=5000 step=5", "Profile vm1.img 2s",
                                                       "Predict vm1.img net=5000 step=5",
                                                       "Profile missing.img 2s"}));
  EXPECT_TRUE(IsSlow(ParseRequest(R"({"op":"predict","images":["a"],"net_kbps":1})").command.value()));
  EXPECT_TRUE(IsLong(ParseRequest(R"({"op":"profile","images":["a"],"seconds":1})").command.value()));
  EXPECT_FALSE(IsLong(ParseRequest(R"({"op":"finish","id":"m1"})").command.value()));
}

TEST(DispatchTest, HybridMigrationsSaySoInTheirAnswers) {
  FakeMigrationService service;
  auto run = [&](const std::string& line) { return ParseAndExecute(service, line); };
  EXPECT_EQ(run(R"({"op":"start","images":["a.img"],"target":"h:1"})")["id"], "m1");
  EXPECT_EQ(run(R"({"op":"start","images":["b.img"],"target":"h:1","mode":"hybrid","precopy_pct":30,)"
                R"("postcopy_timeout_s":120})")["id"],
            "m2");
  // Pre-copy: the answer is unchanged.
  EXPECT_EQ(run(R"({"op":"query_completion","id":"m1","req":1})"),
            json::parse(R"({"ok":true,"completed":false,"req":1})"));
  EXPECT_EQ(run(R"({"op":"query_completion","id":"m2"})"), json::parse(R"({"ok":true,"completed":false,"hybrid":true})"));
  json progress = run(R"({"op":"query_progress","id":"m2"})");
  EXPECT_EQ(progress["mode"], "hybrid");
  EXPECT_EQ(progress["precopy_pct"], 30);
  EXPECT_EQ(run(R"({"op":"status","id":"m1"})")["progress"]["mode"], "precopy");
  EXPECT_EQ(run(R"({"op":"list"})")["migrations"][1]["progress"]["precopy_pct"], 30);
  EXPECT_EQ(run(R"({"op":"query_completion","id":"m9"})")["error"]["code"], "unknown_id");
  // After finish a hybrid migration is in postcopy and cannot be cancelled (the fake
  // models the engine's rule).
  EXPECT_EQ(run(R"({"op":"finish","id":"m2"})")["ok"], true);
  EXPECT_EQ(run(R"({"op":"query_progress","id":"m2"})")["phase"], "postcopy");
  EXPECT_EQ(run(R"({"op":"cancel","id":"m2"})")["error"]["code"], "wrong_state");
  EXPECT_EQ(service.calls().at(1), "Start b.img -> h:1 net=0 disk=0 hybrid=30%:120s");

  service.SetIncoming({{"c.img", "postcopy", "", 10, 4, 3 << 19, 1 << 19, 1, 2.5, 2.5}});
  json incoming = run(R"({"op":"incoming","req":"x"})");
  EXPECT_EQ(incoming["req"], "x");
  ASSERT_EQ(incoming["incoming"].size(), 1u);
  EXPECT_EQ(incoming["incoming"][0]["image"], "c.img");
  EXPECT_EQ(incoming["incoming"][0]["blocks_remote"], 4);
  EXPECT_FALSE(incoming["incoming"][0].contains("reason"));
}

}  // namespace
}  // namespace migratefs::control
