#include "broker/daemon/peer_auth.h"

#include <gtest/gtest.h>

namespace migratefs::broker {
namespace {

using nlohmann::json;

const std::string kKey = "0123456789abcdef-shared";

TEST(PeerAuth, HmacMatchesRfc4231Case2) {
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(PeerAuth, SealedMessageOpensOnce) {
  MessageVerifier v(kKey, 30);
  std::string line = SealMessage(kKey, {{"op", "release_bandwidth"}, {"sections", {"s1"}}}, "a", 1000);
  auto body = v.Open(line, 1001);
  ASSERT_TRUE(body) << body.error().message;
  EXPECT_EQ(body.value()["op"], "release_bandwidth");
  EXPECT_EQ(body.value()["from"], "a");
  EXPECT_EQ(body.value()["sections"][0], "s1");
  auto again = v.Open(line, 1002);  // replay
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, errc::kAuthFailed);
  EXPECT_NE(again.error().message.find("replay"), std::string::npos);
}

TEST(PeerAuth, NoncesDiffer) {
  json a = json::parse(SealMessage(kKey, {{"op", "x"}}, "a", 1));
  json b = json::parse(SealMessage(kKey, {{"op", "x"}}, "a", 1));
  EXPECT_NE(a["body"], b["body"]);
}

TEST(PeerAuth, WrongKeyAndAlteredBodyAreRefused) {
  MessageVerifier v(kKey, 30);
  auto wrong = v.Open(SealMessage("another-key-16-bytes", {{"op", "x"}}, "a", 1000), 1000);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, errc::kAuthFailed);
  EXPECT_NE(wrong.error().message.find("bad MAC"), std::string::npos);

  json envelope = json::parse(SealMessage(kKey, {{"op", "x"}, {"sections", {"s1"}}}, "a", 1000));
  std::string body = envelope["body"];
  body.replace(body.find("s1"), 2, "s2");
  envelope["body"] = body;
  auto altered = v.Open(envelope.dump(), 1000);
  ASSERT_FALSE(altered);
  EXPECT_EQ(altered.error().code, errc::kAuthFailed);

  envelope = json::parse(SealMessage(kKey, {{"op", "x"}}, "a", 1000));
  std::string mac = envelope["mac"];
  mac[0] = mac[0] == '0' ? '1' : '0';
  envelope["mac"] = mac;
  EXPECT_FALSE(v.Open(envelope.dump(), 1000));
  envelope["mac"] = "abc";  // short
  EXPECT_FALSE(v.Open(envelope.dump(), 1000));
}

TEST(PeerAuth, StaleAndFutureTimestampsAreRefused) {
  MessageVerifier v(kKey, 30);
  auto stale = v.Open(SealMessage(kKey, {{"op", "x"}}, "a", 1000), 1031);
  ASSERT_FALSE(stale);
  EXPECT_NE(stale.error().message.find("replay window"), std::string::npos);
  EXPECT_FALSE(v.Open(SealMessage(kKey, {{"op", "x"}}, "a", 1100), 1000));
  EXPECT_TRUE(v.Open(SealMessage(kKey, {{"op", "x"}}, "a", 1029), 1000));
}

TEST(PeerAuth, NotAnEnvelope) {
  MessageVerifier v(kKey, 30);
  EXPECT_EQ(v.Open("{\"op\":\"release_bandwidth\"}", 0).error().code, errc::kAuthFailed);
  EXPECT_EQ(v.Open("not json", 0).error().code, errc::kBadRequest);
  // A valid MAC over a body without ts/nonce is still refused.
  std::string body = "{\"op\":\"x\",\"from\":\"a\"}";
  json envelope = {{"body", body}, {"mac", HmacSha256Hex(kKey, body)}};
  EXPECT_EQ(v.Open(envelope.dump(), 0).error().code, errc::kBadRequest);
}

}  // namespace
}  // namespace migratefs::broker
