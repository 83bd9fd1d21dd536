// The peer protocol's wire format (DESIGN.md "Peer protocol"). Public so that tools,
// tests and fuzzers can speak it; the only encoder/decoder is net/peer/frame.h.
//
// A connection is a sequence of frames. Every frame is a fixed 48-byte little-endian
// header followed by `payload_len` payload bytes:
//
//   off size field
//     0    2 type         FrameType
//     2    2 flags        type-specific (kFlag*)
//     4    4 handle       image handle (from the OpenImage ack), 0 when unused
//     8    8 request_id   chosen by the sender of a request; echoed in its Ack/Error
//    16    8 offset       byte offset (data, zero), first block (hash request)
//    24    8 length       byte count (data, zero), new size (resize), block count (hash)
//    32    4 payload_len  bytes after the header; <= kMaxFramePayload
//    36    4 reserved     must be 0 (lets a later version add a field)
//    40    8 checksum     XXH3-64 of header bytes 0..39 with seed = XXH3-64(payload)
//                         (unseeded; of 0 bytes if none): covers header and payload.
//                         Every frame carries one.
//
// Contracts:
// - A receiver validates the header (type known, flags known, reserved 0, payload_len
//   within kMaxFramePayload and within the type's own limit) BEFORE it allocates or
//   reads the payload, and the checksum before it acts on anything. A violation is a
//   protocol error: the receiver sends an Error frame (request_id 0) if it can and
//   closes the connection.
// - Handshake (exactly in this order, nothing else before it completes):
//     client -> Hello     {HelloPayload: versions, features, auth mode, client nonce}
//     server -> Challenge {HelloPayload: chosen version, common features, auth mode,
//                          server nonce}   or Error(auth_failed / bad_request)
//     client -> Auth      {32-byte client MAC}           (only if auth mode is HMAC)
//     server -> Auth      {32-byte server MAC}           or Error(auth_failed)
//   MAC = HMAC-SHA256(key, role label || Hello payload || Challenge payload), with role
//   label kClientLabel or kServerLabel. Both nonces, the versions, the features and the
//   role are bound, so neither a replayed nor a reflected MAC verifies. Without a key on
//   either side (auth mode none) both must agree on it; a keyed side refuses an unkeyed
//   peer with auth_failed.
// - After the handshake the client sends requests (OpenImage, Data, Zero, Resize, Sync,
//   HashRequest, FinishImage, AbortImage); the server answers each with exactly one Ack
//   or Error carrying the same request_id. Acks of one image may come back out of
//   order (disjoint writes complete out of order); writes/zeroes/resizes of one image
//   that overlap are applied in arrival order.
#pragma once

#include <cstddef>
#include <cstdint>

namespace migratefs::wire {

inline constexpr uint32_t kMagic = 0x3153464du;  // "MFS1" little-endian, first field of Hello
// Version 2: OpenImage carries the image's identity and the source daemon's instance
// id (below). A version-1 peer cannot say which image it sends, so it is refused.
inline constexpr uint16_t kVersion = 2;
inline constexpr uint16_t kMinVersion = 2;

// Feature bits, negotiated as the AND of both sides' sets. The v1 core (data, zero,
// resize, sync, hash, finish, abort) needs no bit; bits name optional extras.
inline constexpr uint64_t kFeatureZeroRange = 1ull << 0;   // Zero punches holes (stays sparse)
inline constexpr uint64_t kFeatureHashXxh3 = 1ull << 1;    // HashRequest answers XXH3-64 per block
inline constexpr uint64_t kFeaturePostcopy = 1ull << 2;    // Postcopy and Fetch (hybrid copy, issue 10)
inline constexpr uint64_t kFeatureAwaitedWrites = 1ull << 3;  // Data may carry kFlagAwaited
inline constexpr uint64_t kFeaturesSupported =
    kFeatureZeroRange | kFeatureHashXxh3 | kFeaturePostcopy | kFeatureAwaitedWrites;

enum class FrameType : uint16_t {
  // Handshake.
  kHello = 1,
  kChallenge = 2,
  kAuth = 3,
  // Requests (client -> server).
  kOpenImage = 16,   // payload OpenImagePayload; Ack: handle, OpenReplyPayload
  kData = 17,        // offset, length, payload = the bytes (payload_len == length)
  kZero = 18,        // offset, length: reads back as zeros, target stays sparse, size unchanged
  kResize = 19,      // length = new size (truncate or extend with a hole)
  kSync = 20,        // fdatasync after every earlier frame of the image completed
  kHashRequest = 21, // offset = first block, length = count; Ack payload: count x u64 LE,
                     // each XXH3-64 of the block's bytes with trailing zero bytes dropped
                     // (so holes, zero blocks, blocks past EOF and short last blocks compare
                     // equal to the same content read on the source; net::HashBlock)
  kFinishImage = 22, // fsync, clear the receiving mark, tell the daemon the copy is complete
  kAbortImage = 23,  // flags kFlagKeepPartial: keep marked incomplete; else unlink
  kPostcopy = 24,    // hybrid switch-over: offset = postcopy timeout (s), length = image size,
                     // payload = PostcopyPayload. Ack once the target's copy is the VM's
                     // (local writers allowed) and its reads of the listed blocks fetch them.
  // Replies (server -> client).
  kAck = 32,         // request_id of the request; type-specific payload
  kError = 33,       // request_id (0 = connection-level); payload ErrorPayload
  // Server -> client, unsolicited, never answered (postcopy only): a local reader on the
  // target waits for blocks [offset, offset+length) of handle; send them first.
  kFetch = 34,
};

// Returns true for the values of FrameType above.
constexpr bool IsKnownFrameType(uint16_t t) {
  return (t >= 1 && t <= 3) || (t >= 16 && t <= 24) || (t >= 32 && t <= 34);
}

// Flags.
inline constexpr uint16_t kFlagResume = 1u << 0;       // OpenImage: keep an existing partial copy
inline constexpr uint16_t kFlagOverwrite = 1u << 1;    // OpenImage: an existing file of another identity may be replaced
inline constexpr uint16_t kFlagVerify = 1u << 2;       // OpenImage: open an existing copy read-only, for HashRequest only
inline constexpr uint16_t kFlagPostcopy = 1u << 3;     // OpenImage: reattach to the copy's postcopy (after a lost link)
inline constexpr uint16_t kFlagKeepPartial = 1u << 0;  // AbortImage: keep the copy, marked incomplete
inline constexpr uint16_t kFlagAwaited = 1u << 0;      // Data: a VM waits for this write's ack (sync mirror)
inline constexpr uint16_t kFlagFetchMap = 1u << 0;     // Fetch: the target lacks these; no reader waits
                                                       // (sent on a postcopy reattach, before its ack)
inline constexpr uint16_t kFlagsKnownMask = 0x000f;    // any other bit set -> protocol error

// Sizes and limits.
inline constexpr size_t kHeaderSize = 48;
inline constexpr uint32_t kMaxFramePayload = 16u << 20;     // 16 MiB; a bigger payload_len is refused
inline constexpr uint32_t kMaxDataLength = kMaxFramePayload;
inline constexpr uint32_t kMaxErrorPayload = 64u << 10;     // code + message
inline constexpr uint32_t kMaxHandshakePayload = 256;
inline constexpr uint64_t kMaxImageSize = 1ull << 50;       // 1 PiB: offsets/sizes beyond are refused
inline constexpr uint64_t kMaxHashBlocks = kMaxFramePayload / 8;
inline constexpr uint32_t kMinBlockSize = 512;
inline constexpr uint32_t kMaxBlockSize = 64u << 20;
inline constexpr size_t kMaxNameLength = 4096;              // bytes, whole relative name
inline constexpr size_t kMaxNameComponent = 255;            // bytes, one component (NAME_MAX)
inline constexpr size_t kMaxNameComponents = 64;            // directory depth + 1
inline constexpr size_t kNonceSize = 32;
inline constexpr size_t kMacSize = 32;                      // HMAC-SHA256

// Role labels bound into the handshake MACs.
inline constexpr const char kClientLabel[] = "migratefs-v1 client proof";
inline constexpr const char kServerLabel[] = "migratefs-v1 server proof";

// Auth modes carried in HelloPayload.
inline constexpr uint8_t kAuthNone = 0;
inline constexpr uint8_t kAuthHmacSha256 = 1;

// Payload layouts (little-endian, packed, no padding):
//
// HelloPayload (Hello and Challenge), 56 bytes:
//   u32 magic (kMagic) | u16 min_version | u16 max_version (Challenge: both = chosen)
//   | u64 features | u8 auth_mode | u8[7] zero | u8[32] nonce (RAND_bytes)
inline constexpr size_t kHelloPayloadSize = 56;
//
// OpenImagePayload: u64 size | u32 block_size | u16 name_len | name bytes (no NUL)
//   | u8 identity_len | identity bytes (the image's user.migratefs.id, <= 64, may be 0)
//   | u8[16] instance (random id of the sending daemon process, to catch a start to itself).
inline constexpr size_t kOpenImageFixedSize = 14;
inline constexpr size_t kMaxIdentityLength = 64;
inline constexpr size_t kInstanceIdSize = 16;
inline constexpr size_t kOpenImageMaxSize = kOpenImageFixedSize + 4096 + 1 + kMaxIdentityLength + kInstanceIdSize;
//
// OpenReplyPayload (in the Ack of OpenImage; header.handle = the new handle):
//   u8 existed | u8[7] zero | u64 target_size (size before this open changed it)
//   | u64 free_bytes (available to the daemon on the target's file system).
inline constexpr size_t kOpenReplySize = 24;
//
// PostcopyPayload: the blocks the target lacks, one bit per block of the OpenImage's
//   block size, block i = bit (i % 8) of byte i / 8; ceil(blocks / 8) bytes for
//   blocks = ceil(length / block_size). Every other block is on the target already.
inline constexpr uint64_t kMaxPostcopyTimeoutS = 86400;
//
// ErrorPayload: u16 code_len | code bytes (an errc:: string) | message bytes (rest).

}  // namespace migratefs::wire
