// Error values shared by every layer: a stable machine-readable code (the strings the
// control socket puts in {"error":{"code":...}}) plus a human message.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace migratefs {

// Stable codes. Scripts and brokers match on these strings; never rename one.
namespace errc {
inline constexpr const char* kBadRequest = "bad_request";        // malformed JSON, missing/mistyped field
inline constexpr const char* kUnknownOp = "unknown_op";
inline constexpr const char* kUnknownId = "unknown_id";          // no migration with that id
inline constexpr const char* kInvalidArgument = "invalid_argument";  // value out of range
inline constexpr const char* kBadName = "bad_name";              // absolute, "..", empty component, ...
inline constexpr const char* kNotFound = "not_found";            // image does not exist
inline constexpr const char* kBusy = "busy";                     // image already migrating / fenced
inline constexpr const char* kWrongState = "wrong_state";        // e.g. finish before completion
inline constexpr const char* kTooLarge = "too_large";            // line or frame over the limit
inline constexpr const char* kPeerUnreachable = "peer_unreachable";
inline constexpr const char* kAuthFailed = "auth_failed";
inline constexpr const char* kIo = "io_error";
inline constexpr const char* kInternal = "internal";
// Refusals by the target daemon, decided before anything is written there:
inline constexpr const char* kTargetIsSelf = "target_is_self";  // the target is this very daemon
inline constexpr const char* kTargetExists = "target_exists";   // a different file of that name exists there
inline constexpr const char* kTargetBusy = "target_busy";       // open for writing there, or migrating/fenced there
inline constexpr const char* kTargetFull = "target_full";       // the target's file system is out of space
inline constexpr const char* kResourceExhausted = "resource_exhausted";  // out of fds/threads/memory; retry later
}  // namespace errc

struct Error {
  std::string code;     // one of errc::*
  std::string message;  // for humans; says what was wrong and, when useful, what to do
};

// Either a value or an Error. Small on purpose: no exceptions cross layer boundaries.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT(runtime/explicit)
  Result(Error error) : v_(std::move(error)) {}      // NOLINT(runtime/explicit)
  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  const T& value() const { return std::get<T>(v_); }
  T& value() { return std::get<T>(v_); }
  const Error& error() const { return std::get<Error>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct Ok {};
using Status = Result<Ok>;
inline Status OkStatus() { return Ok{}; }
inline Error MakeError(const char* code, std::string message) { return Error{code, std::move(message)}; }

}  // namespace migratefs
