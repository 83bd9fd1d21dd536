// Authenticated broker messages (broker-to-broker release requests, scheduler submits).
//
// Wire form, one JSON line:  {"body":"<JSON text>","mac":"<64 hex>"}
// mac = HMAC-SHA256(pre-shared key, the body's exact bytes). The MAC covers the body as
// sent, so no canonical JSON form is needed. The body is an object that holds, besides
// its op fields, "from" (sender name), "ts" (sender's clock, seconds since the epoch)
// and "nonce" (32 hex digits from a CSPRNG). A receiver accepts a body once: ts must lie
// within +-window of its clock and the nonce must not have been seen within the window.
#pragma once

#include <map>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "migratefs/status.h"

namespace migratefs::broker {

// HMAC-SHA256 of `data` under `key`, lower-case hex.
std::string HmacSha256Hex(const std::string& key, const std::string& data);

// Adds from/ts/nonce to `body` and returns the envelope line (no newline).
std::string SealMessage(const std::string& key, nlohmann::json body, const std::string& from,
                        double now_s);

// Checks envelopes. Thread-safe.
class MessageVerifier {
 public:
  MessageVerifier(std::string key, double window_s) : key_(std::move(key)), window_s_(window_s) {}

  // The authenticated body, or auth_failed (bad MAC, stale or future ts, replayed
  // nonce) / bad_request (not an envelope, body not an object, fields missing).
  // Nothing is remembered from a message that fails.
  Result<nlohmann::json> Open(const std::string& line, double now_s);
  // The same, for an envelope already parsed.
  Result<nlohmann::json> OpenParsed(const nlohmann::json& envelope, double now_s);

 private:
  std::string key_;
  double window_s_;
  std::mutex mu_;
  std::map<std::string, double> seen_;  // nonce -> ts, forgotten after the window
};

}  // namespace migratefs::broker
