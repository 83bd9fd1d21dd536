// Encoding and validating peer-protocol frames (include/migratefs/wire.h).
//
// Everything here is pure (no I/O, no globals) so the same code serves the client, the
// server, the tests and the fuzzer. Decoding validates a header completely from its 48
// bytes before the caller allocates anything for the payload.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "migratefs/status.h"
#include "migratefs/wire.h"

namespace migratefs::net {

struct FrameHeader {
  wire::FrameType type = wire::FrameType::kAck;
  uint16_t flags = 0;
  uint32_t handle = 0;
  uint64_t request_id = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint32_t payload_len = 0;
  uint64_t checksum = 0;  // filled by EncodeHeader / read by DecodeHeader
};

// Largest payload_len accepted for `type` (0 for types without a payload).
uint32_t MaxPayloadFor(wire::FrameType type);

// checksum = XXH3-64(header bytes [0, 40), seed = XXH3-64(payload)): covers both, and
// lets a sender hash a large payload before it knows the request id (outside its lock).
uint64_t FrameChecksum(const uint8_t* header40, const void* payload, size_t payload_len);
uint64_t PayloadHash(const void* payload, size_t payload_len);
uint64_t FrameChecksumWithPayloadHash(const uint8_t* header40, uint64_t payload_hash);

// Writes the 48-byte header for `h` (h.payload_len must equal payload_len) into `out`,
// including the checksum over header and payload. Sets h.checksum.
void EncodeHeader(FrameHeader& h, const void* payload, uint8_t out[wire::kHeaderSize]);

// Same, with the payload's PayloadHash() already computed.
void EncodeHeaderWithPayloadHash(FrameHeader& h, uint64_t payload_hash, uint8_t out[wire::kHeaderSize]);

// Whole frame as one buffer; for small frames (handshake, control, acks).
std::string EncodeFrame(FrameHeader h, std::string_view payload = {});

// Parses and validates 48 header bytes: known type, known flags, reserved == 0,
// payload_len <= MaxPayloadFor(type). Allocates nothing.
// Errors: kTooLarge (payload over the limit), kBadRequest (anything else).
Result<FrameHeader> DecodeHeader(const uint8_t* p);

// Checks the checksum of a decoded header against its payload. Error: kBadRequest.
Status VerifyChecksum(const uint8_t* header_bytes, const FrameHeader& h, const void* payload);

// A decoded frame with its payload.
struct Frame {
  FrameHeader header;
  std::vector<uint8_t> payload;
};

// Incremental decoder over a byte stream: Append() what was received, then call Next()
// until it returns an empty optional (need more bytes). After an error the stream is
// unusable (the connection must be closed). A payload is allocated only after its
// header validated, so a hostile length allocates nothing.
class FrameReader {
 public:
  void Append(const void* data, size_t len);
  Result<std::optional<Frame>> Next();
  size_t buffered() const { return buf_.size() - pos_; }
  // Gives the buffered bytes (at most max) to the caller and drops them; lets a reader
  // that parsed a header read a large payload straight into its own buffer.
  size_t Take(void* out, size_t max);
  // Parses only the next header if 48 bytes are buffered (consumes them).
  Result<std::optional<FrameHeader>> NextHeader(uint8_t raw[wire::kHeaderSize]);

 private:
  void Compact();
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;
};

// ---- Payload codecs. Each Decode* checks sizes exactly; errors are kBadRequest. ----

struct HelloPayload {
  uint16_t min_version = wire::kMinVersion;
  uint16_t max_version = wire::kVersion;
  uint64_t features = 0;
  uint8_t auth_mode = wire::kAuthNone;
  uint8_t nonce[wire::kNonceSize] = {};
};
std::string EncodeHello(const HelloPayload& h);
Result<HelloPayload> DecodeHello(const uint8_t* p, size_t len);

struct OpenImagePayload {
  uint64_t size = 0;
  uint32_t block_size = 0;
  std::string name;      // validated separately (net/image_name.h)
  std::string identity;  // the image's identity (image_identity.h); "" = none known
  std::string instance;  // wire::kInstanceIdSize bytes: the sending daemon; "" (zeros on the wire) if unknown
};
std::string EncodeOpenImage(const OpenImagePayload& o);
Result<OpenImagePayload> DecodeOpenImage(const uint8_t* p, size_t len);

struct OpenReplyPayload {
  bool existed = false;
  uint64_t target_size = 0;
  uint64_t free_bytes = 0;
};
std::string EncodeOpenReply(const OpenReplyPayload& r);
Result<OpenReplyPayload> DecodeOpenReply(const uint8_t* p, size_t len);

std::string EncodeErrorPayload(const Error& e);
// Always yields an Error: the peer's, or kBadRequest "protocol: malformed error frame".
Error DecodeErrorPayload(const uint8_t* p, size_t len);

// Little-endian helpers (the wire is little-endian on every host).
void PutLe16(uint8_t* p, uint16_t v);
void PutLe32(uint8_t* p, uint32_t v);
void PutLe64(uint8_t* p, uint64_t v);
uint16_t GetLe16(const uint8_t* p);
uint32_t GetLe32(const uint8_t* p);
uint64_t GetLe64(const uint8_t* p);

const char* FrameTypeName(wire::FrameType t);

}  // namespace migratefs::net
