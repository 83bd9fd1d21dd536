#include "net/control/request.h"

#include <gtest/gtest.h>

#include "migratefs/control_protocol.h"
#include "net/control/host_port.h"

namespace migratefs::control {
namespace {

// The command a line parses to; fails the test if it does not parse.
template <typename T>
T ParseAs(const std::string& line) {
  ParsedRequest parsed = ParseRequest(line);
  EXPECT_TRUE(parsed.command.ok()) << line << " -> " << parsed.command.error().code << ": "
                                   << parsed.command.error().message;
  if (!parsed.command.ok()) return T{};
  EXPECT_TRUE(std::holds_alternative<T>(parsed.command.value())) << line;
  if (!std::holds_alternative<T>(parsed.command.value())) return T{};
  return std::get<T>(parsed.command.value());
}

Error ParseError(const std::string& line) {
  ParsedRequest parsed = ParseRequest(line);
  EXPECT_FALSE(parsed.command.ok()) << line;
  if (parsed.command.ok()) return Error{};
  return parsed.command.error();
}

// Expects `line` to fail with `code` and a message that mentions `mention`.
void ExpectError(const std::string& line, const char* code, const std::string& mention) {
  Error error = ParseError(line);
  EXPECT_EQ(error.code, code) << line << " -> " << error.message;
  EXPECT_NE(error.message.find(mention), std::string::npos)
      << line << " -> message \"" << error.message << "\" does not mention " << mention;
}

// --- every op, well formed ---

TEST(ParseRequestTest, Start) {
  auto c = ParseAs<StartCommand>(
      R"({"op":"start","images":["vm1.img","vm1-data.qcow2"],"target":"10.0.0.2:7000"})");
  EXPECT_EQ(c.request.images, (std::vector<std::string>{"vm1.img", "vm1-data.qcow2"}));
  EXPECT_EQ(c.request.target, "10.0.0.2:7000");
  EXPECT_EQ(c.request.network_kbps, 0u);
  EXPECT_EQ(c.request.disk_kbps, 0u);
}

TEST(ParseRequestTest, StartWithLimits) {
  auto c = ParseAs<StartCommand>(
      R"({"op":"start","images":["a"],"target":"[fd00::2]:7000",)"
      R"("network_kbps":20000,"disk_kbps":5000})");
  EXPECT_EQ(c.request.target, "[fd00::2]:7000");
  EXPECT_EQ(c.request.network_kbps, 20000u);
  EXPECT_EQ(c.request.disk_kbps, 5000u);
}

TEST(ParseRequestTest, StartWithMarking) {
  auto plain = ParseAs<StartCommand>(R"({"op":"start","images":["a"],"target":"h:1"})");
  EXPECT_FALSE(plain.request.dscp.has_value());
  EXPECT_FALSE(plain.request.so_priority.has_value());
  auto named = ParseAs<StartCommand>(R"({"op":"start","images":["a"],"target":"h:1","dscp":"AF41","so_priority":6})");
  EXPECT_EQ(named.request.dscp, uint8_t(34));
  EXPECT_EQ(named.request.so_priority, uint32_t(6));
  auto numbers = ParseAs<StartCommand>(
      R"({"op":"start","images":["a"],"target":"h:1","dscp":46,"so_priority":65552})");
  EXPECT_EQ(numbers.request.dscp, uint8_t(46));
  EXPECT_EQ(numbers.request.so_priority, uint32_t(0x10010));
  EXPECT_EQ(ParseAs<StartCommand>(R"({"op":"start","images":["a"],"target":"h:1","dscp":"cs6"})").request.dscp,
            uint8_t(48));
  EXPECT_EQ(ParseAs<StartCommand>(R"({"op":"start","images":["a"],"target":"h:1","dscp":"0"})").request.dscp,
            uint8_t(0));
}

TEST(ParseRequestTest, StartWithBadMarking) {
  const std::string head = R"({"op":"start","images":["a"],"target":"h:1",)";
  // Well-typed but out of range or unknown: invalid_argument.
  for (const char* bad : {R"("dscp":"AF44")", R"("dscp":"XX")", R"("dscp":64)", R"("dscp":-1)", R"("dscp":"")",
                          R"("dscp":"64")"}) {
    ExpectError(head + bad + "}", errc::kInvalidArgument, "\"dscp\"");
  }
  for (const char* bad : {R"("so_priority":-1)", R"("so_priority":4294967296)"}) {
    ExpectError(head + bad + "}", errc::kInvalidArgument, "\"so_priority\"");
  }
  // Of the wrong JSON type: bad_request, like every other field (request.h).
  for (const char* bad : {R"("dscp":true)", R"("dscp":null)", R"("dscp":34.5)", R"("dscp":["AF41"])"}) {
    ExpectError(head + bad + "}", errc::kBadRequest, "\"dscp\"");
  }
  for (const char* bad : {R"("so_priority":"6")", R"("so_priority":6.5)", R"("so_priority":false)"}) {
    ExpectError(head + bad + "}", errc::kBadRequest, "\"so_priority\"");
  }
}

TEST(ParseRequestTest, SetLimits) {
  auto net = ParseAs<SetLimitCommand>(R"({"op":"set_network_limit","id":"m1","kbps":20000})");
  EXPECT_EQ(net.id, "m1");
  EXPECT_EQ(net.kind, RateKind::kNetwork);
  EXPECT_EQ(net.kbps, 20000u);
  auto disk = ParseAs<SetLimitCommand>(R"({"op":"set_disk_limit","id":"m2","kbps":0})");
  EXPECT_EQ(disk.id, "m2");
  EXPECT_EQ(disk.kind, RateKind::kDisk);
  EXPECT_EQ(disk.kbps, 0u);
}

TEST(ParseRequestTest, LimitBoundsAndWholeFloats) {
  EXPECT_EQ(ParseAs<SetLimitCommand>(R"({"op":"set_disk_limit","id":"m1","kbps":100000000})")
                .kbps,
            kMaxLimitKbps);
  EXPECT_EQ(ParseAs<SetLimitCommand>(R"({"op":"set_disk_limit","id":"m1","kbps":5000.0})").kbps,
            5000u);
}

TEST(ParseRequestTest, QueryProgress) {
  auto disk = ParseAs<QueryProgressCommand>(R"({"op":"query_progress","id":"m1","what":"disk"})");
  EXPECT_EQ(disk.id, "m1");
  EXPECT_EQ(disk.what, RateKind::kDisk);
  auto net =
      ParseAs<QueryProgressCommand>(R"({"op":"query_progress","id":"m1","what":"network"})");
  EXPECT_EQ(net.what, RateKind::kNetwork);
  auto dflt = ParseAs<QueryProgressCommand>(R"({"op":"query_progress","id":"m1"})");
  EXPECT_EQ(dflt.what, RateKind::kNetwork);
}

TEST(ParseRequestTest, IdOnlyOps) {
  EXPECT_EQ(ParseAs<QueryCompletionCommand>(R"({"op":"query_completion","id":"m1"})").id, "m1");
  EXPECT_EQ(ParseAs<FinishCommand>(R"({"op":"finish","id":"m2"})").id, "m2");
  EXPECT_EQ(ParseAs<VerifyCommand>(R"({"op":"verify","id":"m3"})").id, "m3");
  EXPECT_EQ(ParseAs<ReleaseCommand>(R"({"op":"release","id":"m4"})").id, "m4");
}

TEST(ParseRequestTest, Cancel) {
  auto plain = ParseAs<CancelCommand>(R"({"op":"cancel","id":"m1"})");
  EXPECT_EQ(plain.id, "m1");
  EXPECT_FALSE(plain.keep_partial);
  EXPECT_TRUE(
      ParseAs<CancelCommand>(R"({"op":"cancel","id":"m1","keep_partial":true})").keep_partial);
}

TEST(ParseRequestTest, ListStatusEvents) {
  ParseAs<ListCommand>(R"({"op":"list"})");
  ParseAs<EventsCommand>(R"({"op":"events"})");
  EXPECT_FALSE(ParseAs<StatusCommand>(R"({"op":"status"})").id.has_value());
  EXPECT_EQ(ParseAs<StatusCommand>(R"({"op":"status","id":"m7"})").id, "m7");
}

TEST(ParseRequestTest, ToleratesCarriageReturnAndWhitespace) {
  ParseAs<ListCommand>("  { \"op\" : \"list\" }  \r");
}

// --- the "req" tag ---

TEST(ParseRequestTest, TagIsKeptForAnyScalar) {
  for (const char* tag : {"7", "\"abc\"", "true", "null", "-1.5"}) {
    ParsedRequest parsed = ParseRequest(std::string(R"({"op":"list","req":)") + tag + "}");
    ASSERT_TRUE(parsed.command.ok()) << tag;
    ASSERT_TRUE(parsed.tag.has_value()) << tag;
    EXPECT_EQ(*parsed.tag, nlohmann::json::parse(tag));
  }
}

TEST(ParseRequestTest, TagIsKeptWhenTheRequestIsBad) {
  ParsedRequest parsed = ParseRequest(R"({"op":"nope","req":42})");
  EXPECT_FALSE(parsed.command.ok());
  ASSERT_TRUE(parsed.tag.has_value());
  EXPECT_EQ(*parsed.tag, 42);
}

TEST(ParseRequestTest, TagMustBeScalar) {
  ParsedRequest parsed = ParseRequest(R"({"op":"list","req":{"a":1}})");
  ASSERT_FALSE(parsed.command.ok());
  EXPECT_EQ(parsed.command.error().code, errc::kBadRequest);
  EXPECT_FALSE(parsed.tag.has_value());
}

// --- bad input classes ---

TEST(ParseRequestTest, MalformedJson) {
  for (const char* line : {"", "{", "{\"op\":\"list\"", "not json", "{\"op\":'list'}",
                           "{\"op\":\"list\"} trailing", "\xff\xfe", "{\"op\":\"li\xffst\"}"}) {
    ExpectError(line, errc::kBadRequest, "malformed JSON");
  }
}

TEST(ParseRequestTest, NumberOverflowIsMalformedNotACrash) {  // found by request_fuzz
  ExpectError(R"({"op":"set_disk_limit","id":"m1","kbps":1e400})", errc::kBadRequest,
              "malformed JSON");
  ExpectError(R"({"x":270000e000000000007000002})", errc::kBadRequest, "malformed JSON");
}

TEST(ParseRequestTest, NotAnObject) {
  for (const char* line : {"[]", "42", "\"list\"", "null", "[{\"op\":\"list\"}]"}) {
    ExpectError(line, errc::kBadRequest, "JSON object");
  }
}

TEST(ParseRequestTest, OpMissingOrMistyped) {
  ExpectError(R"({})", errc::kBadRequest, "\"op\"");
  ExpectError(R"({"id":"m1"})", errc::kBadRequest, "\"op\"");
  ExpectError(R"({"op":7})", errc::kBadRequest, "\"op\"");
  ExpectError(R"({"op":null})", errc::kBadRequest, "\"op\"");
  ExpectError(R"({"op":["list"]})", errc::kBadRequest, "\"op\"");
}

TEST(ParseRequestTest, UnknownOp) {
  ExpectError(R"({"op":"launch_missiles"})", errc::kUnknownOp, "launch_missiles");
  ExpectError(R"({"op":""})", errc::kUnknownOp, "unknown op");
  ExpectError(R"({"op":"LIST"})", errc::kUnknownOp, "LIST");
  // A huge op name is not echoed whole.
  Error error = ParseError(R"({"op":")" + std::string(10000, 'x') + "\"}");
  EXPECT_EQ(error.code, errc::kUnknownOp);
  EXPECT_LT(error.message.size(), 200u);
}

TEST(ParseRequestTest, MissingFieldsAreNamed) {
  ExpectError(R"({"op":"start","target":"h:1"})", errc::kBadRequest, "\"images\"");
  ExpectError(R"({"op":"start","images":["a"]})", errc::kBadRequest, "\"target\"");
  ExpectError(R"({"op":"set_network_limit","kbps":1})", errc::kBadRequest, "\"id\"");
  ExpectError(R"({"op":"set_network_limit","id":"m1"})", errc::kBadRequest, "\"kbps\"");
  ExpectError(R"({"op":"set_disk_limit","id":"m1"})", errc::kBadRequest, "\"kbps\"");
  for (const char* op : {"query_progress", "query_completion", "finish", "cancel", "verify",
                         "release"}) {
    ExpectError(std::string(R"({"op":")") + op + "\"}", errc::kBadRequest, "\"id\"");
  }
}

TEST(ParseRequestTest, MistypedFieldsAreNamed) {
  ExpectError(R"({"op":"start","images":"vm1.img","target":"h:1"})", errc::kBadRequest,
              "\"images\"");
  ExpectError(R"({"op":"start","images":[1],"target":"h:1"})", errc::kBadRequest, "\"images\"");
  ExpectError(R"({"op":"start","images":[""],"target":"h:1"})", errc::kBadRequest, "\"images\"");
  ExpectError(R"({"op":"start","images":[],"target":"h:1"})", errc::kBadRequest, "\"images\"");
  ExpectError(R"({"op":"start","images":["a"],"target":7000})", errc::kBadRequest, "\"target\"");
  ExpectError(R"({"op":"start","images":["a"],"target":"h:1","network_kbps":"fast"})",
              errc::kBadRequest, "\"network_kbps\"");
  ExpectError(R"({"op":"start","images":["a"],"target":"h:1","disk_kbps":true})",
              errc::kBadRequest, "\"disk_kbps\"");
  ExpectError(R"({"op":"set_network_limit","id":1,"kbps":1})", errc::kBadRequest, "\"id\"");
  ExpectError(R"({"op":"set_network_limit","id":"","kbps":1})", errc::kBadRequest, "\"id\"");
  ExpectError(R"({"op":"set_network_limit","id":"m1","kbps":"20000"})", errc::kBadRequest,
              "\"kbps\"");
  ExpectError(R"({"op":"set_network_limit","id":"m1","kbps":null})", errc::kBadRequest,
              "\"kbps\"");
  ExpectError(R"({"op":"set_disk_limit","id":"m1","kbps":1.5})", errc::kBadRequest, "\"kbps\"");
  ExpectError(R"({"op":"query_progress","id":"m1","what":1})", errc::kBadRequest, "\"what\"");
  ExpectError(R"({"op":"cancel","id":"m1","keep_partial":"yes"})", errc::kBadRequest,
              "\"keep_partial\"");
  ExpectError(R"({"op":"status","id":5})", errc::kBadRequest, "\"id\"");
}

TEST(ParseRequestTest, UnexpectedFieldsAreNamed) {
  ExpectError(R"({"op":"cancel","id":"m1","keep_partal":true})", errc::kBadRequest,
              "\"keep_partal\"");
  ExpectError(R"({"op":"list","id":"m1"})", errc::kBadRequest, "\"id\"");
  ExpectError(R"({"op":"events","what":"disk"})", errc::kBadRequest, "\"what\"");
}

TEST(ParseRequestTest, OutOfRangeValues) {
  ExpectError(R"({"op":"set_network_limit","id":"m1","kbps":-1})", errc::kInvalidArgument,
              "\"kbps\"");
  ExpectError(R"({"op":"set_network_limit","id":"m1","kbps":-0.5})", errc::kInvalidArgument,
              "\"kbps\"");
  ExpectError(R"({"op":"set_disk_limit","id":"m1","kbps":100000001})", errc::kInvalidArgument,
              "\"kbps\"");
  ExpectError(R"({"op":"set_disk_limit","id":"m1","kbps":18446744073709551615})",
              errc::kInvalidArgument, "\"kbps\"");
  ExpectError(R"({"op":"set_disk_limit","id":"m1","kbps":1e300})", errc::kInvalidArgument,
              "\"kbps\"");
  ExpectError(R"({"op":"start","images":["a"],"target":"h:1","network_kbps":-20})",
              errc::kInvalidArgument, "\"network_kbps\"");
  ExpectError(R"({"op":"query_progress","id":"m1","what":"cpu"})", errc::kInvalidArgument,
              "\"what\"");
  ExpectError(R"({"op":"start","images":["a","a"],"target":"h:1"})", errc::kInvalidArgument,
              "twice");
  for (const char* target : {"host", "host:", ":7000", "host:0", "host:65536", "host:70000000",
                             "host:7a", "fd00::2:7000", "[fd00::2:7000", "bad host:1", "[]:1"}) {
    ExpectError(std::string(R"({"op":"start","images":["a"],"target":")") + target + "\"}",
                errc::kInvalidArgument, "\"target\"");
  }
}

TEST(ParseRequestTest, MirrorMode) {
  auto plain = ParseAs<StartCommand>(R"({"op":"start","images":["a"],"target":"h:1"})");
  EXPECT_FALSE(plain.request.mirror.async);
  auto a = ParseAs<StartCommand>(R"({"op":"start","images":["a"],"target":"h:1","mirror":"async",)"
                                 R"("backlog_max_bytes":1048576,"backlog_low_pct":10,"backlog_high_pct":80})");
  EXPECT_TRUE(a.request.mirror.async);
  EXPECT_EQ(a.request.mirror.backlog_max_bytes, 1048576u);
  EXPECT_EQ(a.request.mirror.backlog_low_pct, 10u);
  EXPECT_EQ(a.request.mirror.backlog_high_pct, 80u);
  auto d = ParseAs<SetMirrorModeCommand>(R"({"op":"set_mirror_mode","id":"m1","mirror":"async"})");
  EXPECT_EQ(d.id, "m1");
  EXPECT_TRUE(d.mode.async);
  EXPECT_EQ(d.mode.backlog_max_bytes, 64u << 20);
  EXPECT_EQ(d.mode.backlog_low_pct, 5u);
  EXPECT_EQ(d.mode.backlog_high_pct, 70u);
  ExpectError(R"({"op":"set_mirror_mode","id":"m1"})", errc::kBadRequest, "\"mirror\"");
  ExpectError(R"({"op":"set_mirror_mode","id":"m1","mirror":"fast"})", errc::kInvalidArgument, "\"mirror\"");
  ExpectError(R"({"op":"set_mirror_mode","id":"m1","mirror":true})", errc::kBadRequest, "\"mirror\"");
  ExpectError(R"({"op":"start","images":["a"],"target":"h:1","backlog_max_bytes":5})", errc::kBadRequest,
              "\"backlog_max_bytes\"");
  ExpectError(R"({"op":"set_mirror_mode","id":"m1","mirror":"async","backlog_max_bytes":0})",
              errc::kInvalidArgument, "\"backlog_max_bytes\"");
  ExpectError(R"({"op":"set_mirror_mode","id":"m1","mirror":"async","backlog_high_pct":101})",
              errc::kInvalidArgument, "\"backlog_high_pct\"");
  ExpectError(R"({"op":"set_mirror_mode","id":"m1","mirror":"async","backlog_low_pct":70})",
              errc::kInvalidArgument, "\"backlog_low_pct\"");
  ExpectError(R"({"op":"set_mirror_mode","id":"m1","mirror":"async","backlog_low_pct":-1})",
              errc::kInvalidArgument, "\"backlog_low_pct\"");
  ExpectError(R"({"op":"set_mirror_mode","id":"m1","mirror":"async","backlog_low_pct":"5"})",
              errc::kBadRequest, "\"backlog_low_pct\"");
}

TEST(ParseRequestTest, CopyMode) {
  const std::string head = R"({"op":"start","images":["a"],"target":"h:1",)";
  auto plain = ParseAs<StartCommand>(R"({"op":"start","images":["a"],"target":"h:1"})");
  EXPECT_FALSE(plain.request.copy.hybrid);
  EXPECT_EQ(plain.request.copy.precopy_pct, 100u);
  EXPECT_FALSE(ParseAs<StartCommand>(head + R"("mode":"precopy"})").request.copy.hybrid);
  auto h = ParseAs<StartCommand>(head + R"("mode":"hybrid","precopy_pct":40})");
  EXPECT_TRUE(h.request.copy.hybrid);
  EXPECT_EQ(h.request.copy.precopy_pct, 40u);
  EXPECT_EQ(h.request.copy.postcopy_timeout_s, 600u);
  auto t = ParseAs<StartCommand>(head + R"("mode":"hybrid","precopy_pct":0,"postcopy_timeout_s":86400,"mirror":"async"})");
  EXPECT_EQ(t.request.copy.precopy_pct, 0u);
  EXPECT_EQ(t.request.copy.postcopy_timeout_s, 86400u);
  EXPECT_TRUE(t.request.mirror.async);
  EXPECT_EQ(ParseAs<StartCommand>(head + R"("mode":"hybrid","precopy_pct":100,"postcopy_timeout_s":1})")
                .request.copy.postcopy_timeout_s,
            1u);
}

TEST(ParseRequestTest, BadCopyMode) {
  const std::string head = R"({"op":"start","images":["a"],"target":"h:1",)";
  ExpectError(head + R"("mode":"postcopy"})", errc::kInvalidArgument, "\"mode\"");
  ExpectError(head + R"("mode":"Hybrid","precopy_pct":5})", errc::kInvalidArgument, "\"mode\"");
  ExpectError(head + R"("mode":true})", errc::kBadRequest, "\"mode\"");
  ExpectError(head + R"("mode":null})", errc::kBadRequest, "\"mode\"");
  // precopy_pct is required in hybrid mode: a default would be a guess.
  Error missing = ParseError(head + R"("mode":"hybrid"})");
  EXPECT_EQ(missing.code, errc::kBadRequest);
  EXPECT_EQ(missing.message,  // as net/control/README.md quotes it
            "missing field \"precopy_pct\" (a whole number 0..100: the share of data blocks on the target "
            "before completion; required with \"mode\": \"hybrid\")");
  ExpectError(head + R"("mode":"hybrid","postcopy_timeout_s":60})", errc::kBadRequest, "\"precopy_pct\"");
  // The hybrid fields need "mode": "hybrid", whether mode is absent or precopy.
  for (const char* alone : {R"("precopy_pct":50})", R"("postcopy_timeout_s":60})",
                            R"("mode":"precopy","precopy_pct":100})", R"("mode":"precopy","postcopy_timeout_s":600})"}) {
    Error error = ParseError(head + alone);
    EXPECT_EQ(error.code, errc::kBadRequest) << alone;
    EXPECT_NE(error.message.find("needs \"mode\": \"hybrid\""), std::string::npos) << alone << " -> " << error.message;
  }
  // Out of range: invalid_argument; wrong type or fraction: bad_request.
  for (const char* bad : {R"("precopy_pct":101)", R"("precopy_pct":-1)", R"("precopy_pct":18446744073709551615)"}) {
    ExpectError(head + R"("mode":"hybrid",)" + bad + "}", errc::kInvalidArgument, "\"precopy_pct\"");
  }
  for (const char* bad : {R"("precopy_pct":"50")", R"("precopy_pct":50.5)", R"("precopy_pct":null)"}) {
    ExpectError(head + R"("mode":"hybrid",)" + bad + "}", errc::kBadRequest, "\"precopy_pct\"");
  }
  for (const char* bad : {R"("postcopy_timeout_s":0)", R"("postcopy_timeout_s":86401)", R"("postcopy_timeout_s":-5)"}) {
    ExpectError(head + R"("mode":"hybrid","precopy_pct":50,)" + bad + "}", errc::kInvalidArgument,
                "\"postcopy_timeout_s\"");
  }
  ExpectError(head + R"("mode":"hybrid","precopy_pct":50,"postcopy_timeout_s":"600"})", errc::kBadRequest,
              "\"postcopy_timeout_s\"");
  // Not a field of other ops.
  ExpectError(R"({"op":"set_mirror_mode","id":"m1","mirror":"sync","mode":"hybrid"})", errc::kBadRequest,
              "\"mode\"");
}

TEST(ParseRequestTest, Incoming) {
  ParseAs<IncomingCommand>(R"({"op":"incoming"})");
  ParseAs<IncomingCommand>(R"({"op":"incoming","req":"i"})");
  ExpectError(R"({"op":"incoming","id":"m1"})", errc::kBadRequest, "\"id\"");
}

TEST(ParseRequestTest, Profile) {
  auto c = ParseAs<ProfileCommand>(R"({"op":"profile","images":["vm1.img","vm1-data.img"],"seconds":60})");
  EXPECT_EQ(c.request.images, (std::vector<std::string>{"vm1.img", "vm1-data.img"}));
  EXPECT_EQ(c.request.seconds, 60u);
  EXPECT_EQ(ParseAs<ProfileCommand>(R"({"op":"profile","images":["a"],"seconds":3600})").request.seconds, 3600u);
  ExpectError(R"({"op":"profile","images":["a"]})", errc::kBadRequest, "\"seconds\"");
  ExpectError(R"({"op":"profile","seconds":5})", errc::kBadRequest, "\"images\"");
  ExpectError(R"({"op":"profile","images":["a"],"seconds":0})", errc::kInvalidArgument, "1..3600");
  ExpectError(R"({"op":"profile","images":["a"],"seconds":3601})", errc::kInvalidArgument, "1..3600");
  ExpectError(R"({"op":"profile","images":["a"],"seconds":-1})", errc::kInvalidArgument, "\"seconds\"");
  ExpectError(R"({"op":"profile","images":["a"],"seconds":2.5})", errc::kBadRequest, "\"seconds\"");
  ExpectError(R"({"op":"profile","images":["a","a"],"seconds":2})", errc::kInvalidArgument, "twice");
  ExpectError(R"({"op":"profile","images":["a"],"seconds":2,"net_kbps":1})", errc::kBadRequest, "\"net_kbps\"");
}

TEST(ParseRequestTest, Predict) {
  auto plain = ParseAs<PredictCommand>(R"({"op":"predict","images":["vm1.img"],"net_kbps":5000})");
  EXPECT_EQ(plain.request.images, std::vector<std::string>{"vm1.img"});
  EXPECT_EQ(plain.request.net_kbps, 5000u);
  EXPECT_EQ(plain.request.deadline_s, 0);  // none
  EXPECT_EQ(plain.request.rtt_ms, 5);
  EXPECT_EQ(plain.request.step, 5);
  auto full = ParseAs<PredictCommand>(
      R"({"op":"predict","images":["a","b"],"net_kbps":5000.0,"deadline_s":300.5,"rtt_ms":0,"step":10})");
  EXPECT_EQ(full.request.net_kbps, 5000u);
  EXPECT_EQ(full.request.deadline_s, 300.5);
  EXPECT_EQ(full.request.rtt_ms, 0);
  EXPECT_EQ(full.request.step, 10);
  ExpectError(R"({"op":"predict","images":["a"]})", errc::kBadRequest, "\"net_kbps\"");
  ExpectError(R"({"op":"predict","images":["a"],"net_kbps":0})", errc::kInvalidArgument, "above 0");
  ExpectError(R"({"op":"predict","images":["a"],"net_kbps":-3})", errc::kInvalidArgument, "\"net_kbps\"");
  ExpectError(R"({"op":"predict","images":["a"],"net_kbps":"fast"})", errc::kBadRequest, "\"net_kbps\"");
  ExpectError(R"({"op":"predict","images":["a"],"net_kbps":1,"deadline_s":-1})", errc::kInvalidArgument,
              "\"deadline_s\"");
  ExpectError(R"({"op":"predict","images":["a"],"net_kbps":1,"deadline_s":"5m"})", errc::kBadRequest,
              "\"deadline_s\"");
  ExpectError(R"({"op":"predict","images":["a"],"net_kbps":1,"rtt_ms":60001})", errc::kInvalidArgument,
              "\"rtt_ms\"");
  ExpectError(R"({"op":"predict","images":["a"],"net_kbps":1,"step":0})", errc::kInvalidArgument, "\"step\"");
  ExpectError(R"({"op":"predict","images":["a"],"net_kbps":1,"step":101})", errc::kInvalidArgument, "\"step\"");
  ExpectError(R"({"op":"predict","images":["a"],"net_kbps":1,"seconds":2})", errc::kBadRequest, "\"seconds\"");
}

TEST(ParseRequestTest, LineLimit) {
  // Exactly at the limit: parsed (and found wrong for other reasons).
  std::string padded = R"({"op":"list","req":")";
  padded += std::string(kMaxRequestLineBytes - padded.size() - 2, 'x') + "\"}";
  ASSERT_EQ(padded.size(), kMaxRequestLineBytes);
  EXPECT_TRUE(ParseRequest(padded).command.ok());
  ExpectError(padded + " ", errc::kTooLarge, "longer than");
}

TEST(ParseRequestTest, DeepNestingIsRejectedNotCrashing) {
  std::string deep = R"({"op":"list","req":)" + std::string(30000, '[') +
                     std::string(30000, ']') + "}";
  EXPECT_EQ(ParseError(deep).code, errc::kBadRequest);
}

TEST(SplitHostPortTest, Forms) {
  auto v4 = SplitHostPort("10.0.0.2:7000");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4.value().host, "10.0.0.2");
  EXPECT_EQ(v4.value().port, 7000);
  auto v6 = SplitHostPort("[fd00::2]:65535");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6.value().host, "fd00::2");
  EXPECT_EQ(v6.value().port, 65535);
  auto name = SplitHostPort("pm-17.rack_3.example:1");
  ASSERT_TRUE(name.ok());
  EXPECT_EQ(name.value().host, "pm-17.rack_3.example");
}

}  // namespace
}  // namespace migratefs::control
