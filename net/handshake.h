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
// kPeerUnreachable (I/O, timeout), kBadRequest (not a migratefs peer / bad version).
Result<HandshakeResult> RunClientHandshake(int fd, std::string_view key, Deadline deadline);

// Runs the server side. `key` empty means insecure (the caller checks that insecure
// was asked for). On refusal it sends an Error frame saying why before returning.
Result<HandshakeResult> RunServerHandshake(int fd, std::string_view key, Deadline deadline);

// HMAC-SHA256(key, label || a || b). Exposed for tests.
std::string HandshakeMac(std::string_view key, std::string_view label, std::string_view a, std::string_view b);

// Reads a pre-shared key file. The key is the file's bytes with trailing "\n"/"\r\n"
// removed (so `echo secret > keyfile` works the same on both sides).
// Refused (kInvalidArgument): unreadable, not a regular file, empty (after stripping),
// larger than 64 KiB, or accessible by group or others (mode & 077; like ssh, a key
// that others can read is not secret: chmod 600 it).
Result<std::string> LoadKeyFile(const std::string& path);

}  // namespace migratefs::net
