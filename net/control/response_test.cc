#include "net/control/response.h"

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

TEST(DispatchTest, RoutesEveryOpToTheService) {
  FakeMigrationService service;
  auto run = [&](const std::string& line) {
    ParsedRequest parsed = ParseRequest(line);
    EXPECT_TRUE(parsed.command.ok()) << line;
    return Execute(parsed.command.value(), service, parsed.tag);
  };
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

TEST(DispatchTest, HybridMigrationsSaySoInTheirAnswers) {
  FakeMigrationService service;
  auto run = [&](const std::string& line) {
    ParsedRequest parsed = ParseRequest(line);
    EXPECT_TRUE(parsed.command.ok()) << line;
    return Execute(parsed.command.value(), service, parsed.tag);
  };
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
