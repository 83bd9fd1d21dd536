#include "net/peer/frame.h"

#include "net/xxh.h"

#include <bit>
#include <algorithm>
#include <cstring>

namespace migratefs::net {

using wire::FrameType;

namespace {
template <typename T>
T ToLe(T v) {
  if constexpr (std::endian::native == std::endian::big) {
    if constexpr (sizeof(T) == 2) return __builtin_bswap16(v);
    if constexpr (sizeof(T) == 4) return __builtin_bswap32(v);
    if constexpr (sizeof(T) == 8) return __builtin_bswap64(v);
  }
  return v;
}
Error Bad(std::string msg) { return MakeError(errc::kBadRequest, "protocol: " + std::move(msg)); }
}  // namespace

void PutLe16(uint8_t* p, uint16_t v) { v = ToLe(v); std::memcpy(p, &v, 2); }
void PutLe32(uint8_t* p, uint32_t v) { v = ToLe(v); std::memcpy(p, &v, 4); }
void PutLe64(uint8_t* p, uint64_t v) { v = ToLe(v); std::memcpy(p, &v, 8); }
uint16_t GetLe16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return ToLe(v); }
uint32_t GetLe32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return ToLe(v); }
uint64_t GetLe64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return ToLe(v); }

const char* FrameTypeName(FrameType t) {
  switch (t) {
    case FrameType::kHello: return "hello";
    case FrameType::kChallenge: return "challenge";
    case FrameType::kAuth: return "auth";
    case FrameType::kOpenImage: return "open_image";
    case FrameType::kData: return "data";
    case FrameType::kZero: return "zero";
    case FrameType::kResize: return "resize";
    case FrameType::kSync: return "sync";
    case FrameType::kHashRequest: return "hash_request";
    case FrameType::kFinishImage: return "finish_image";
    case FrameType::kAbortImage: return "abort_image";
    case FrameType::kPostcopy: return "postcopy";
    case FrameType::kFetch: return "fetch";
    case FrameType::kAck: return "ack";
    case FrameType::kError: return "error";
  }
  return "unknown";
}

uint32_t MaxPayloadFor(FrameType type) {
  switch (type) {
    case FrameType::kHello:
    case FrameType::kChallenge:
      return wire::kHelloPayloadSize;
    case FrameType::kAuth:
      return wire::kMacSize;
    case FrameType::kOpenImage:
      return wire::kOpenImageMaxSize;
    case FrameType::kData:
      return wire::kMaxDataLength;
    case FrameType::kAck:
      return wire::kMaxFramePayload;  // hash replies
    case FrameType::kError:
      return wire::kMaxErrorPayload;
    case FrameType::kPostcopy:
      return wire::kMaxFramePayload;  // the bitmap: 1 bit per block
    case FrameType::kFetch:
    case FrameType::kZero:
    case FrameType::kResize:
    case FrameType::kSync:
    case FrameType::kHashRequest:
    case FrameType::kFinishImage:
    case FrameType::kAbortImage:
      return 0;
  }
  return 0;
}

uint64_t PayloadHash(const void* payload, size_t payload_len) { return XXH3_64bits(payload, payload_len); }

uint64_t FrameChecksumWithPayloadHash(const uint8_t* header40, uint64_t payload_hash) {
  return XXH3_64bits_withSeed(header40, 40, payload_hash);
}

uint64_t FrameChecksum(const uint8_t* header40, const void* payload, size_t payload_len) {
  return FrameChecksumWithPayloadHash(header40, PayloadHash(payload, payload_len));
}

void EncodeHeader(FrameHeader& h, const void* payload, uint8_t out[wire::kHeaderSize]) {
  EncodeHeaderWithPayloadHash(h, PayloadHash(payload, h.payload_len), out);
}

void EncodeHeaderWithPayloadHash(FrameHeader& h, uint64_t payload_hash, uint8_t out[wire::kHeaderSize]) {
  PutLe16(out + 0, static_cast<uint16_t>(h.type));
  PutLe16(out + 2, h.flags);
  PutLe32(out + 4, h.handle);
  PutLe64(out + 8, h.request_id);
  PutLe64(out + 16, h.offset);
  PutLe64(out + 24, h.length);
  PutLe32(out + 32, h.payload_len);
  PutLe32(out + 36, 0);
  h.checksum = FrameChecksumWithPayloadHash(out, payload_hash);
  PutLe64(out + 40, h.checksum);
}

std::string EncodeFrame(FrameHeader h, std::string_view payload) {
  std::string out(wire::kHeaderSize + payload.size(), '\0');
  h.payload_len = static_cast<uint32_t>(payload.size());
  if (!payload.empty()) std::memcpy(out.data() + wire::kHeaderSize, payload.data(), payload.size());
  EncodeHeader(h, payload.data(), reinterpret_cast<uint8_t*>(out.data()));
  return out;
}

Result<FrameHeader> DecodeHeader(const uint8_t* p) {
  FrameHeader h;
  const uint16_t type = GetLe16(p);
  if (!wire::IsKnownFrameType(type)) return Bad("unknown frame type " + std::to_string(type));
  h.type = static_cast<FrameType>(type);
  h.flags = GetLe16(p + 2);
  if (h.flags & ~wire::kFlagsKnownMask) return Bad("unknown flags " + std::to_string(h.flags));
  h.handle = GetLe32(p + 4);
  h.request_id = GetLe64(p + 8);
  h.offset = GetLe64(p + 16);
  h.length = GetLe64(p + 24);
  h.payload_len = GetLe32(p + 32);
  if (GetLe32(p + 36) != 0) return Bad("reserved header field is not zero");
  h.checksum = GetLe64(p + 40);
  const uint32_t max = MaxPayloadFor(h.type);
  if (h.payload_len > max) {
    return MakeError(errc::kTooLarge, std::string("protocol: ") + FrameTypeName(h.type) + " payload of " +
                                          std::to_string(h.payload_len) + " bytes exceeds the limit of " +
                                          std::to_string(max));
  }
  return h;
}

Status VerifyChecksum(const uint8_t* header_bytes, const FrameHeader& h, const void* payload) {
  if (FrameChecksum(header_bytes, payload, h.payload_len) != h.checksum) {
    return Bad(std::string("checksum mismatch on ") + FrameTypeName(h.type) + " frame (request " +
               std::to_string(h.request_id) + ")");
  }
  return OkStatus();
}

// ---- FrameReader ----

void FrameReader::Append(const void* data, size_t len) {
  Compact();
  if (len == 0) return;
  const auto* b = static_cast<const uint8_t*>(data);
  buf_.insert(buf_.end(), b, b + len);
}

void FrameReader::Compact() {
  if (pos_ == 0) return;
  if (pos_ == buf_.size()) {
    buf_.clear();
  } else {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<ptrdiff_t>(pos_));
  }
  pos_ = 0;
}

size_t FrameReader::Take(void* out, size_t max) {
  const size_t n = std::min(max, buffered());
  if (n == 0) return 0;
  std::memcpy(out, buf_.data() + pos_, n);
  pos_ += n;
  return n;
}

Result<std::optional<FrameHeader>> FrameReader::NextHeader(uint8_t raw[wire::kHeaderSize]) {
  if (buffered() < wire::kHeaderSize) return std::optional<FrameHeader>();
  std::memcpy(raw, buf_.data() + pos_, wire::kHeaderSize);
  auto h = DecodeHeader(raw);
  if (!h.ok()) return h.error();
  pos_ += wire::kHeaderSize;
  return std::optional<FrameHeader>(h.value());
}

Result<std::optional<Frame>> FrameReader::Next() {
  if (buffered() < wire::kHeaderSize) return std::optional<Frame>();
  const uint8_t* p = buf_.data() + pos_;
  auto h = DecodeHeader(p);
  if (!h.ok()) return h.error();
  if (buffered() < wire::kHeaderSize + h.value().payload_len) return std::optional<Frame>();
  const uint8_t* payload = p + wire::kHeaderSize;
  Status st = VerifyChecksum(p, h.value(), payload);
  if (!st.ok()) return st.error();
  Frame f;
  f.header = h.value();
  f.payload.assign(payload, payload + f.header.payload_len);
  pos_ += wire::kHeaderSize + f.header.payload_len;
  return std::optional<Frame>(std::move(f));
}

// ---- Payload codecs ----

std::string EncodeHello(const HelloPayload& h) {
  std::string s(wire::kHelloPayloadSize, '\0');
  auto* p = reinterpret_cast<uint8_t*>(s.data());
  PutLe32(p, wire::kMagic);
  PutLe16(p + 4, h.min_version);
  PutLe16(p + 6, h.max_version);
  PutLe64(p + 8, h.features);
  p[16] = h.auth_mode;
  std::memcpy(p + 24, h.nonce, wire::kNonceSize);
  return s;
}

Result<HelloPayload> DecodeHello(const uint8_t* p, size_t len) {
  if (len != wire::kHelloPayloadSize) return Bad("hello payload has " + std::to_string(len) + " bytes");
  if (GetLe32(p) != wire::kMagic) return Bad("bad magic: not a migratefs peer");
  HelloPayload h;
  h.min_version = GetLe16(p + 4);
  h.max_version = GetLe16(p + 6);
  h.features = GetLe64(p + 8);
  h.auth_mode = p[16];
  for (int i = 17; i < 24; ++i) {
    if (p[i] != 0) return Bad("hello reserved bytes are not zero");
  }
  if (h.min_version > h.max_version) return Bad("hello min_version > max_version");
  if (h.auth_mode != wire::kAuthNone && h.auth_mode != wire::kAuthHmacSha256) {
    return Bad("unknown auth mode " + std::to_string(h.auth_mode));
  }
  std::memcpy(h.nonce, p + 24, wire::kNonceSize);
  return h;
}

std::string EncodeOpenImage(const OpenImagePayload& o) {
  const size_t id_len = std::min(o.identity.size(), wire::kMaxIdentityLength);
  std::string s(wire::kOpenImageFixedSize + o.name.size() + 1 + id_len + wire::kInstanceIdSize, '\0');
  auto* p = reinterpret_cast<uint8_t*>(s.data());
  PutLe64(p, o.size);
  PutLe32(p + 8, o.block_size);
  PutLe16(p + 12, static_cast<uint16_t>(o.name.size()));
  std::memcpy(p + 14, o.name.data(), o.name.size());
  uint8_t* q = p + 14 + o.name.size();
  q[0] = static_cast<uint8_t>(id_len);
  std::memcpy(q + 1, o.identity.data(), id_len);
  std::memcpy(q + 1 + id_len, o.instance.data(), std::min(o.instance.size(), wire::kInstanceIdSize));
  return s;
}

Result<OpenImagePayload> DecodeOpenImage(const uint8_t* p, size_t len) {
  if (len < wire::kOpenImageFixedSize) return Bad("open_image payload too short");
  OpenImagePayload o;
  o.size = GetLe64(p);
  o.block_size = GetLe32(p + 8);
  const size_t name_len = GetLe16(p + 12);
  if (wire::kOpenImageFixedSize + name_len + 1 > len) return Bad("open_image name length does not match payload");
  o.name.assign(reinterpret_cast<const char*>(p + 14), name_len);
  const uint8_t* q = p + 14 + name_len;
  const size_t id_len = q[0];
  if (id_len > wire::kMaxIdentityLength) return Bad("open_image identity too long");
  if (wire::kOpenImageFixedSize + name_len + 1 + id_len + wire::kInstanceIdSize != len)
    return Bad("open_image identity or instance length does not match payload");
  o.identity.assign(reinterpret_cast<const char*>(q + 1), id_len);
  o.instance.assign(reinterpret_cast<const char*>(q + 1 + id_len), wire::kInstanceIdSize);
  if (o.instance.find_first_not_of('\0') == std::string::npos) o.instance.clear();  // all zeros: unknown
  return o;
}

std::string EncodeOpenReply(const OpenReplyPayload& r) {
  std::string s(wire::kOpenReplySize, '\0');
  auto* p = reinterpret_cast<uint8_t*>(s.data());
  p[0] = r.existed ? 1 : 0;
  PutLe64(p + 8, r.target_size);
  PutLe64(p + 16, r.free_bytes);
  return s;
}

Result<OpenReplyPayload> DecodeOpenReply(const uint8_t* p, size_t len) {
  if (len != wire::kOpenReplySize) return Bad("open reply has " + std::to_string(len) + " bytes");
  if (p[0] > 1) return Bad("open reply: bad existed flag");
  OpenReplyPayload r;
  r.existed = p[0] == 1;
  r.target_size = GetLe64(p + 8);
  r.free_bytes = GetLe64(p + 16);
  return r;
}

std::string EncodeErrorPayload(const Error& e) {
  std::string code = e.code.substr(0, 255);
  std::string msg = e.message.substr(0, wire::kMaxErrorPayload - 2 - code.size());
  std::string s(2, '\0');
  PutLe16(reinterpret_cast<uint8_t*>(s.data()), static_cast<uint16_t>(code.size()));
  return s + code + msg;
}

Error DecodeErrorPayload(const uint8_t* p, size_t len) {
  if (len < 2) return Bad("malformed error frame (too short)");
  const size_t code_len = GetLe16(p);
  if (code_len == 0 || code_len > 255 || code_len > len - 2) return Bad("malformed error frame (bad code length)");
  Error e;
  e.code.assign(reinterpret_cast<const char*>(p + 2), code_len);
  e.message.assign(reinterpret_cast<const char*>(p + 2 + code_len), len - 2 - code_len);
  return e;
}

}  // namespace migratefs::net
