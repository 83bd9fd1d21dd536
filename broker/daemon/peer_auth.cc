#include "broker/daemon/peer_auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cmath>

namespace migratefs::broker {

namespace {

using nlohmann::json;

std::string Hex(const unsigned char* data, size_t size) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (size_t i = 0; i < size; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 15]);
  }
  return out;
}

std::string NewNonce() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) std::abort();  // no CSPRNG: never send guessable nonces
  return Hex(bytes, sizeof(bytes));
}

Error AuthFailed(const std::string& why) { return MakeError(errc::kAuthFailed, why); }
Error Bad(const std::string& why) { return MakeError(errc::kBadRequest, why); }

}  // namespace

std::string HmacSha256Hex(const std::string& key, const std::string& data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &mac_len);
  return Hex(mac, mac_len);
}

std::string SealMessage(const std::string& key, json body, const std::string& from,
                        double now_s) {
  body["from"] = from;
  body["ts"] = now_s;
  body["nonce"] = NewNonce();
  std::string text = body.dump();
  return json{{"body", text}, {"mac", HmacSha256Hex(key, text)}}.dump();
}

Result<json> MessageVerifier::Open(const std::string& line, double now_s) {
  json envelope = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (envelope.is_discarded()) return Bad("malformed JSON");
  return OpenParsed(envelope, now_s);
}

Result<json> MessageVerifier::OpenParsed(const json& envelope, double now_s) {
  if (!envelope.is_object() || !envelope.contains("body") || !envelope["body"].is_string() ||
      !envelope.contains("mac") || !envelope["mac"].is_string()) {
    return AuthFailed("message is not an authenticated envelope {\"body\":..., \"mac\":...}");
  }
  const std::string& text = envelope["body"].get_ref<const std::string&>();
  const std::string& mac = envelope["mac"].get_ref<const std::string&>();
  std::string expected = HmacSha256Hex(key_, text);
  if (mac.size() != expected.size() ||
      CRYPTO_memcmp(mac.data(), expected.data(), expected.size()) != 0) {
    return AuthFailed("bad MAC (wrong key or altered message)");
  }
  json body = json::parse(text, nullptr, false);
  if (!body.is_object()) return Bad("authenticated body is not a JSON object");
  if (!body.contains("ts") || !body["ts"].is_number() || !body.contains("nonce") ||
      !body["nonce"].is_string() || body["nonce"].get_ref<const std::string&>().size() < 16 ||
      !body.contains("from") || !body["from"].is_string()) {
    return Bad("authenticated body lacks \"from\", \"ts\" or a \"nonce\" of 16+ characters");
  }
  double ts = body["ts"].get<double>();
  if (!std::isfinite(ts) || std::fabs(now_s - ts) > window_s_) {
    return AuthFailed("message timestamp outside the replay window (clock skew or replay)");
  }
  std::lock_guard lock(mu_);
  for (auto it = seen_.begin(); it != seen_.end();) {
    it = (now_s - it->second > 2 * window_s_) ? seen_.erase(it) : std::next(it);
  }
  const std::string& nonce = body["nonce"].get_ref<const std::string&>();
  if (!seen_.emplace(nonce, ts).second) return AuthFailed("replayed message (nonce seen before)");
  return body;
}

}  // namespace migratefs::broker
