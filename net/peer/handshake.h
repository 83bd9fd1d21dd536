// The peer handshake (wire.h): magic, version and feature negotiation, then a mutual
// HMAC-SHA256 challenge-response on the pre-shared key.
//
// Security properties (see net/README.md):
// - Both sides send a fresh 32-byte RAND_bytes nonce. Each side's proof is
//   HMAC-SHA256(key, role label || Hello payload || Challenge payload), so it binds
//   both nonces, the negotiated version/features and the role: a recorded proof does
//   not replay, and a server's proof reflected back to it does not verify as a client's.
// - The client proves first; the server proves only to a client that already proved,
//   so an unauthenticated peer never obtains a MAC computed with the key.
// - MACs are compared with CRYPTO_memcmp (constant time).
// - A keyed side refuses an unkeyed (insecure) peer and vice versa: kAuthFailed.
// The key never crosses the wire. The channel is not encrypted (see README).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "migratefs/status.h"
#include "net/fd_io.h"

namespace migratefs::net {

struct HandshakeResult {
  uint16_t version = 0;
  uint64_t features = 0;      // negotiated (AND of both sides)
  bool authenticated = false; // false only for insecure <-> insecure
};

// Runs the client side on a connected socket. `key` empty = no key (the peer must run
// insecure). Errors: kAuthFailed (any key mismatch or refusal, message says which),
// kPeerUnreachable (I/O, timeout), kBadRequest (not a migratefs peer / bad version /
// a frame the handshake does not take), kTooLarge (a handshake frame over its limit).
Result<HandshakeResult> RunClientHandshake(int fd, std::string_view key, Deadline deadline);

// Until the handshake is over, each side reads nothing but the handshake frame it
// expects next or an Error frame, each no larger than its own small limit below
// (hello/challenge: wire::kHelloPayloadSize, auth: wire::kMacSize). Anything else is
// refused from its 48-byte header, before a byte of payload is read or allocated, and
// ends the handshake at once (kBadRequest for a wrong type, kTooLarge for a payload
// over the limit): a stranger cannot make a daemon reserve 16 MiB by announcing it.
inline constexpr uint32_t kMaxHandshakeErrorPayload = 4096;

// An Error frame (request id 0) that a peer still in its handshake accepts: the
// message is cut to fit kMaxHandshakeErrorPayload.
std::string EncodeHandshakeError(const Error& e);

// Follows one server handshake and decides whether its peer may become a session
// (PeerServer uses it to tell strangers from admitted peers). Called on the thread
// running the handshake.
class HandshakeMonitor {
 public:
  virtual ~HandshakeMonitor() = default;
  // A handshake frame from the peer has just been read (it may still be refused): the
  // peer is getting on. Called with no lock held, before the frame is examined; must
  // be cheap and must not block.
  virtual void OnFrameRead() = 0;
  // The peer proved it knows the key (insecure: both sides agreed on none) and is
  // about to be told it is in. An error refuses it: it is sent to the peer and
  // returned by the handshake.
  virtual Status Admit() = 0;
};

// Runs the server side. `key` empty means insecure (the caller checks that insecure
// was asked for). On refusal it sends an Error frame saying why before returning,
// also for a frame refused from its header. `monitor` may be null.
Result<HandshakeResult> RunServerHandshake(int fd, std::string_view key, Deadline deadline,
                                           HandshakeMonitor* monitor = nullptr);

// HMAC-SHA256(key, label || a || b). Exposed for tests.
std::string HandshakeMac(std::string_view key, std::string_view label, std::string_view a, std::string_view b);

// Reads a pre-shared key file. The key is the file's bytes with trailing "\n"/"\r\n"
// removed (so `echo secret > keyfile` works the same on both sides).
// Refused (kInvalidArgument): unreadable, not a regular file, empty (after stripping),
// larger than 64 KiB, or accessible by group or others (mode & 077; like ssh, a key
// that others can read is not secret: chmod 600 it).
Result<std::string> LoadKeyFile(const std::string& path);

}  // namespace migratefs::net
