#include "net/peer/handshake.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "net/peer/frame.h"

namespace migratefs::net {

using wire::FrameType;

namespace {


Error AuthFailed(std::string msg) { return MakeError(errc::kAuthFailed, std::move(msg)); }

Status SendFrame(int fd, FrameType type, std::string_view payload, Deadline deadline) {
  FrameHeader h;
  h.type = type;
  const std::string f = EncodeFrame(h, payload);
  return WriteAllFd(fd, f.data(), f.size(), deadline);
}

// Sends an Error frame (best effort) and returns the same error for the caller.
Error Refuse(int fd, Error e, Deadline deadline) {
  const std::string f = EncodeHandshakeError(e);
  (void)WriteAllFd(fd, f.data(), f.size(), deadline);
  return e;
}

uint32_t HandshakePayloadLimit(FrameType t) {
  switch (t) {
    case FrameType::kHello:
    case FrameType::kChallenge:
      return wire::kHelloPayloadSize;
    case FrameType::kAuth:
      return wire::kMacSize;
    case FrameType::kError:
      return kMaxHandshakeErrorPayload;
    default:
      return 0;
  }
}

// Admits only `want` or an Error frame, within the handshake's limits (see handshake.h),
// judged on the header alone.
FrameHeaderCheck OnlyHandshakeFrame(FrameType want) {
  return [want](const FrameHeader& h) -> Status {
    if (h.type != want && h.type != FrameType::kError) {
      return MakeError(errc::kBadRequest, std::string("handshake: expected ") + FrameTypeName(want) + ", got a " +
                                              FrameTypeName(h.type) + " frame announcing " +
                                              std::to_string(h.payload_len) + " payload bytes");
    }
    const uint32_t max = HandshakePayloadLimit(h.type);
    if (h.payload_len > max) {
      return MakeError(errc::kTooLarge, std::string("handshake: ") + FrameTypeName(h.type) + " payload of " +
                                            std::to_string(h.payload_len) + " bytes exceeds the handshake limit of " +
                                            std::to_string(max));
    }
    return OkStatus();
  };
}

// Reads the next handshake frame, which must be `want`. An Error frame from the peer
// becomes our error, with *from_peer set (so the server does not answer it).
Result<Frame> Expect(int fd, FrameType want, Deadline deadline, bool* from_peer = nullptr) {
  if (from_peer) *from_peer = false;
  auto f = ReadFrameFd(fd, deadline, OnlyHandshakeFrame(want));
  if (!f.ok()) return f.error();
  const Frame& fr = f.value();
  if (fr.header.type == FrameType::kError) {
    Error err = DecodeErrorPayload(fr.payload.data(), fr.payload.size());
    err.message = "peer refused the handshake: " + err.message;
    if (from_peer) *from_peer = true;
    return err;
  }
  return f;
}

// A server's answer to a failed read: a protocol violation is explained to the peer
// (wire.h: Error frame, then close); I/O errors and the peer's own Error frame are not.
Error ServerReadFailed(int fd, Error e, bool from_peer, Deadline deadline) {
  const bool violation = e.code == errc::kBadRequest || e.code == errc::kTooLarge;
  if (violation && !from_peer) return Refuse(fd, std::move(e), deadline);
  return e;
}

bool RandomNonce(uint8_t* out) { return RAND_bytes(out, static_cast<int>(wire::kNonceSize)) == 1; }

bool MacEquals(std::string_view a, const std::vector<uint8_t>& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view View(const std::vector<uint8_t>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

}  // namespace

std::string EncodeHandshakeError(const Error& e) {
  Error cut = e;
  cut.code.resize(std::min<size_t>(cut.code.size(), 255));
  const size_t room = kMaxHandshakeErrorPayload - 2 - cut.code.size();
  if (cut.message.size() > room) cut.message.resize(room);
  FrameHeader h;
  h.type = FrameType::kError;
  return EncodeFrame(h, EncodeErrorPayload(cut));
}

std::string HandshakeMac(std::string_view key, std::string_view label, std::string_view a, std::string_view b) {
  std::string msg;
  msg.reserve(label.size() + a.size() + b.size());
  msg.append(label).append(a).append(b);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int out_len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(msg.data()),
           msg.size(), out, &out_len) == nullptr) {
    return {};
  }
  return std::string(reinterpret_cast<char*>(out), out_len);
}

Result<HandshakeResult> RunClientHandshake(int fd, std::string_view key, Deadline deadline) {
  HelloPayload hello;
  hello.features = wire::kFeaturesSupported;
  hello.auth_mode = key.empty() ? wire::kAuthNone : wire::kAuthHmacSha256;
  if (!RandomNonce(hello.nonce)) return MakeError(errc::kInternal, "RAND_bytes failed");
  const std::string hello_bytes = EncodeHello(hello);
  Status st = SendFrame(fd, FrameType::kHello, hello_bytes, deadline);
  if (!st.ok()) return st.error();

  auto cf = Expect(fd, FrameType::kChallenge, deadline);
  if (!cf.ok()) return cf.error();
  auto ch = DecodeHello(cf.value().payload.data(), cf.value().payload.size());
  if (!ch.ok()) return ch.error();
  const HelloPayload& c = ch.value();
  if (c.min_version != c.max_version || c.max_version < wire::kMinVersion || c.max_version > wire::kVersion) {
    return MakeError(errc::kBadRequest, "handshake: peer chose unsupported protocol version " +
                                            std::to_string(c.max_version));
  }
  if (c.features & ~hello.features) return MakeError(errc::kBadRequest, "handshake: peer chose unknown features");
  if (c.auth_mode != hello.auth_mode) {
    return AuthFailed(key.empty() ? "peer requires a pre-shared key and we have none (set keyfile=)"
                                  : "peer runs insecure (no key) but we have a key; refusing an "
                                    "unauthenticated peer");
  }
  HandshakeResult r{c.max_version, c.features, !key.empty()};
  if (key.empty()) return r;

  const std::string challenge_bytes(reinterpret_cast<const char*>(cf.value().payload.data()),
                                    cf.value().payload.size());
  const std::string my_mac = HandshakeMac(key, wire::kClientLabel, hello_bytes, challenge_bytes);
  if (my_mac.size() != wire::kMacSize) return MakeError(errc::kInternal, "HMAC-SHA256 failed");
  st = SendFrame(fd, FrameType::kAuth, my_mac, deadline);
  if (!st.ok()) return st.error();

  auto af = Expect(fd, FrameType::kAuth, deadline);
  if (!af.ok()) return af.error();
  const std::string want = HandshakeMac(key, wire::kServerLabel, hello_bytes, challenge_bytes);
  if (!MacEquals(want, af.value().payload)) {
    return AuthFailed("peer failed to prove it knows the pre-shared key");
  }
  return r;
}


Result<HandshakeResult> RunServerHandshake(int fd, std::string_view key, Deadline deadline,
                                           HandshakeMonitor* monitor) {
  bool from_peer = false;
  auto hf = Expect(fd, FrameType::kHello, deadline, &from_peer);
  if (!hf.ok()) return ServerReadFailed(fd, hf.error(), from_peer, deadline);
  if (monitor) monitor->OnFrameRead();
  auto hp = DecodeHello(hf.value().payload.data(), hf.value().payload.size());
  if (!hp.ok()) return Refuse(fd, hp.error(), deadline);
  const HelloPayload& h = hp.value();
  const uint16_t version = std::min(h.max_version, wire::kVersion);
  if (version < h.min_version || version < wire::kMinVersion) {
    return Refuse(fd,
                  MakeError(errc::kBadRequest, "no common protocol version (peer " + std::to_string(h.min_version) +
                                                   ".." + std::to_string(h.max_version) + ", we " +
                                                   std::to_string(wire::kMinVersion) + ".." +
                                                   std::to_string(wire::kVersion) + ")"),
                  deadline);
  }
  const bool keyed = !key.empty();
  if (keyed && h.auth_mode != wire::kAuthHmacSha256) {
    return Refuse(fd, AuthFailed("this daemon requires a pre-shared key and the peer has none"), deadline);
  }
  if (!keyed && h.auth_mode != wire::kAuthNone) {
    return Refuse(fd, AuthFailed("this daemon runs insecure (no key) but the peer has a key; refusing"), deadline);
  }

  HelloPayload c;
  c.min_version = c.max_version = version;
  c.features = h.features & wire::kFeaturesSupported;
  c.auth_mode = h.auth_mode;
  if (!RandomNonce(c.nonce)) return Refuse(fd, MakeError(errc::kInternal, "RAND_bytes failed"), deadline);
  HandshakeResult r{version, c.features, keyed};
  if (!keyed && monitor) {  // insecure: the challenge is the last word, admit before it
    Status a = monitor->Admit();
    if (!a.ok()) return Refuse(fd, a.error(), deadline);
  }
  const std::string challenge_bytes = EncodeHello(c);
  Status st = SendFrame(fd, FrameType::kChallenge, challenge_bytes, deadline);
  if (!st.ok()) return st.error();
  if (!keyed) return r;

  auto af = Expect(fd, FrameType::kAuth, deadline, &from_peer);
  if (!af.ok()) return ServerReadFailed(fd, af.error(), from_peer, deadline);
  if (monitor) monitor->OnFrameRead();
  const std::string_view hello_bytes = View(hf.value().payload);
  const std::string want = HandshakeMac(key, wire::kClientLabel, hello_bytes, challenge_bytes);
  if (want.size() != wire::kMacSize) return Refuse(fd, MakeError(errc::kInternal, "HMAC-SHA256 failed"), deadline);
  if (!MacEquals(want, af.value().payload)) {
    return Refuse(fd, AuthFailed("peer failed to prove it knows the pre-shared key (wrong key?)"), deadline);
  }
  if (monitor) {
    Status a = monitor->Admit();
    if (!a.ok()) return Refuse(fd, a.error(), deadline);
  }
  const std::string mine = HandshakeMac(key, wire::kServerLabel, hello_bytes, challenge_bytes);
  st = SendFrame(fd, FrameType::kAuth, mine, deadline);
  if (!st.ok()) return st.error();
  return r;
}

Result<std::string> LoadKeyFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return MakeError(errc::kInvalidArgument, "keyfile " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return MakeError(errc::kInvalidArgument, "keyfile " + path + ": not a regular file");
  }
  if (st.st_mode & 077) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return MakeError(errc::kInvalidArgument, "keyfile " + path + " is accessible by group/others (mode " + mode +
                                                 "); run chmod 600 on it");
  }
  if (st.st_size > (64 << 10)) {
    ::close(fd);
    return MakeError(errc::kInvalidArgument, "keyfile " + path + ": larger than 64 KiB");
  }
  std::string key(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < key.size()) {
    const ssize_t n = ::read(fd, key.data() + got, key.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  key.resize(got);
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
  if (key.empty()) return MakeError(errc::kInvalidArgument, "keyfile " + path + " is empty");
  return key;
}

}  // namespace migratefs::net
