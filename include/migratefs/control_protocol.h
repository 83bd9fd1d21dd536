// The control socket's wire vocabulary (DESIGN.md "Control socket"), shared by the
// daemon's control server (net/control/), migratectl and the broker.
//
// Framing: UTF-8 JSON, one object per line ('\n'; a trailing '\r' is tolerated), one
// answer line per request, answers in request order. Every answer is either
//   {"ok":true, ...op-specific fields...}
//   {"ok":false,"error":{"code":"<errc::*>","message":"..."}}
// A request may carry "req": <any JSON scalar>; the answer echoes it unchanged so a
// client can match answers to requests. net/control/README.md is the full reference.
#pragma once

#include <cstddef>
#include <cstdint>

namespace migratefs {

// Operation names: the values of the "op" field. Fixed; never rename one.
namespace op {
inline constexpr const char* kStart = "start";
inline constexpr const char* kSetNetworkLimit = "set_network_limit";
inline constexpr const char* kSetDiskLimit = "set_disk_limit";
inline constexpr const char* kSetMirrorMode = "set_mirror_mode";
inline constexpr const char* kQueryProgress = "query_progress";
inline constexpr const char* kQueryCompletion = "query_completion";
inline constexpr const char* kFinish = "finish";
inline constexpr const char* kCancel = "cancel";
inline constexpr const char* kVerify = "verify";
inline constexpr const char* kRelease = "release";
inline constexpr const char* kList = "list";
inline constexpr const char* kStatus = "status";
inline constexpr const char* kEvents = "events";
inline constexpr const char* kIncoming = "incoming";  // the copies this daemon receives
inline constexpr const char* kProfile = "profile";    // count writes per block for a while (seed 002)
inline constexpr const char* kPredict = "predict";    // hybrid-copy prediction from the last profile
}  // namespace op

// The longest request line the server accepts, newline excluded. A longer line is
// answered with too_large and the connection is closed (its end cannot be found safely).
inline constexpr size_t kMaxRequestLineBytes = 64 * 1024;

// The largest rate limit accepted, in KB/s (1 KB = 1000 bytes): 100 GB/s, beyond any
// NIC or disk we run on. Larger values are invalid_argument, not "unlimited"; 0 means
// unlimited.
inline constexpr uint64_t kMaxLimitKbps = 100'000'000;

}  // namespace migratefs
