#include "net/peer/frame.h"

#include <gtest/gtest.h>

#include <cstring>

namespace migratefs::net {
namespace {

using wire::FrameType;

std::string DataFrame(uint64_t id, const std::string& payload) {
  FrameHeader h;
  h.type = FrameType::kData;
  h.request_id = id;
  h.handle = 7;
  h.offset = 4096;
  h.length = payload.size();
  return EncodeFrame(h, payload);
}

TEST(FrameTest, EncodeDecodeRoundTrip) {
  const std::string f = DataFrame(42, "hello world");
  ASSERT_EQ(f.size(), wire::kHeaderSize + 11);
  FrameReader r;
  r.Append(f.data(), f.size());
  auto got = r.Next();
  ASSERT_TRUE(got.ok()) << got.error().message;
  ASSERT_TRUE(got.value().has_value());
  const Frame& fr = *got.value();
  EXPECT_EQ(fr.header.type, FrameType::kData);
  EXPECT_EQ(fr.header.request_id, 42u);
  EXPECT_EQ(fr.header.handle, 7u);
  EXPECT_EQ(fr.header.offset, 4096u);
  EXPECT_EQ(fr.header.length, 11u);
  EXPECT_EQ(std::string(fr.payload.begin(), fr.payload.end()), "hello world");
  auto none = r.Next();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none.value().has_value());
}

TEST(FrameTest, HeaderIsLittleEndianAtFixedOffsets) {
  const std::string f = DataFrame(0x0102030405060708ull, "x");
  const auto* p = reinterpret_cast<const uint8_t*>(f.data());
  EXPECT_EQ(p[0], 17);  // kData
  EXPECT_EQ(p[1], 0);
  EXPECT_EQ(p[4], 7);   // handle
  EXPECT_EQ(p[8], 0x08);  // request id, LSB first
  EXPECT_EQ(p[15], 0x01);
  EXPECT_EQ(GetLe64(p + 16), 4096u);
  EXPECT_EQ(GetLe32(p + 32), 1u);
  EXPECT_EQ(GetLe32(p + 36), 0u);
}

TEST(FrameTest, ByteAtATimeDecodes) {
  std::string stream = DataFrame(1, "abc") + DataFrame(2, std::string(1000, 'z'));
  FrameReader r;
  int frames = 0;
  for (char c : stream) {
    r.Append(&c, 1);
    auto got = r.Next();
    ASSERT_TRUE(got.ok());
    if (got.value()) ++frames;
  }
  EXPECT_EQ(frames, 2);
}

TEST(FrameTest, HugePayloadLengthRejectedBeforeAllocation) {
  std::string f = DataFrame(1, "abc");
  PutLe32(reinterpret_cast<uint8_t*>(f.data()) + 32, 0xFFFFFFFFu);  // ~4 GiB
  auto h = DecodeHeader(reinterpret_cast<const uint8_t*>(f.data()));
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().code, errc::kTooLarge);
  FrameReader r;
  r.Append(f.data(), wire::kHeaderSize);  // only the header: must fail now, not wait for 4 GiB
  auto got = r.Next();
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code, errc::kTooLarge);
}

TEST(FrameTest, PerTypeLimits) {
  FrameHeader h;
  h.type = FrameType::kSync;
  std::string f = EncodeFrame(h, "x");  // sync carries no payload
  auto d = DecodeHeader(reinterpret_cast<const uint8_t*>(f.data()));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, errc::kTooLarge);
  h.type = FrameType::kData;
  std::string big(wire::kMaxFramePayload + 1, 'a');
  f = EncodeFrame(h, big);
  EXPECT_FALSE(DecodeHeader(reinterpret_cast<const uint8_t*>(f.data())).ok());
  big.pop_back();
  f = EncodeFrame(h, big);
  EXPECT_TRUE(DecodeHeader(reinterpret_cast<const uint8_t*>(f.data())).ok());
}

TEST(FrameTest, UnknownTypeFlagsReserved) {
  std::string f = DataFrame(1, "abc");
  auto* p = reinterpret_cast<uint8_t*>(f.data());
  PutLe16(p, 99);
  auto d = DecodeHeader(p);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, errc::kBadRequest);
  EXPECT_NE(d.error().message.find("unknown frame type"), std::string::npos);
  f = DataFrame(1, "abc");
  p = reinterpret_cast<uint8_t*>(f.data());
  PutLe16(p + 2, 0x8000);
  EXPECT_FALSE(DecodeHeader(p).ok());
  f = DataFrame(1, "abc");
  p = reinterpret_cast<uint8_t*>(f.data());
  PutLe32(p + 36, 1);
  EXPECT_FALSE(DecodeHeader(p).ok());
}

TEST(FrameTest, ChecksumCoversHeaderAndPayload) {
  for (size_t flip : {size_t{8}, size_t{16}, size_t{24}, wire::kHeaderSize + 1}) {
    std::string f = DataFrame(5, "payload!");
    f[flip] ^= 0x01;
    FrameReader r;
    r.Append(f.data(), f.size());
    auto got = r.Next();
    ASSERT_FALSE(got.ok()) << "flip at " << flip;
    EXPECT_EQ(got.error().code, errc::kBadRequest);
    EXPECT_NE(got.error().message.find("checksum"), std::string::npos);
  }
}

TEST(FrameTest, PayloadHashSplitMatchesWhole) {
  FrameHeader a, b;
  a.type = b.type = FrameType::kData;
  a.length = b.length = a.payload_len = b.payload_len = 5;
  uint8_t ha[48], hb[48];
  EncodeHeader(a, "abcde", ha);
  EncodeHeaderWithPayloadHash(b, PayloadHash("abcde", 5), hb);
  EXPECT_EQ(std::memcmp(ha, hb, 48), 0);
}

TEST(FrameTest, HelloCodec) {
  HelloPayload h;
  h.features = 3;
  h.auth_mode = wire::kAuthHmacSha256;
  h.nonce[0] = 9;
  h.nonce[31] = 7;
  const std::string s = EncodeHello(h);
  ASSERT_EQ(s.size(), wire::kHelloPayloadSize);
  auto d = DecodeHello(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value().features, 3u);
  EXPECT_EQ(d.value().nonce[31], 7);
  std::string bad = s;
  bad[0] ^= 1;
  auto e = DecodeHello(reinterpret_cast<const uint8_t*>(bad.data()), bad.size());
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("magic"), std::string::npos);
  EXPECT_FALSE(DecodeHello(reinterpret_cast<const uint8_t*>(s.data()), s.size() - 1).ok());
}

TEST(FrameTest, OpenAndErrorCodecs) {
  const std::string s = EncodeOpenImage({1ull << 33, 524288, "dir/vm.img", "", ""});
  auto d = DecodeOpenImage(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value().size, 1ull << 33);
  EXPECT_EQ(d.value().block_size, 524288u);
  EXPECT_EQ(d.value().name, "dir/vm.img");
  EXPECT_EQ(d.value().identity, "");
  EXPECT_EQ(d.value().instance, "");  // zeros on the wire: unknown
  EXPECT_FALSE(DecodeOpenImage(reinterpret_cast<const uint8_t*>(s.data()), s.size() - 1).ok());
  const std::string instance(wire::kInstanceIdSize, 'i');
  const std::string t = EncodeOpenImage({7, 4096, "a.img", "0123456789abcdef0123456789abcdef", instance});
  auto dt = DecodeOpenImage(reinterpret_cast<const uint8_t*>(t.data()), t.size());
  ASSERT_TRUE(dt.ok());
  EXPECT_EQ(dt.value().identity, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(dt.value().instance, instance);
  std::string long_id = t;
  long_id[wire::kOpenImageFixedSize + 5] = char(wire::kMaxIdentityLength + 1);
  EXPECT_FALSE(DecodeOpenImage(reinterpret_cast<const uint8_t*>(long_id.data()), long_id.size()).ok());

  const std::string e = EncodeErrorPayload(MakeError(errc::kIo, "ENOSPC"));
  Error back = DecodeErrorPayload(reinterpret_cast<const uint8_t*>(e.data()), e.size());
  EXPECT_EQ(back.code, errc::kIo);
  EXPECT_EQ(back.message, "ENOSPC");
  Error junk = DecodeErrorPayload(reinterpret_cast<const uint8_t*>("\xff\xff"), 2);
  EXPECT_EQ(junk.code, errc::kBadRequest);

  const std::string o = EncodeOpenReply({true, 12345});
  auto od = DecodeOpenReply(reinterpret_cast<const uint8_t*>(o.data()), o.size());
  ASSERT_TRUE(od.ok());
  EXPECT_TRUE(od.value().existed);
  EXPECT_EQ(od.value().target_size, 12345u);
}

}  // namespace
}  // namespace migratefs::net
