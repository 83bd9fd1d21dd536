// migratectl's exit codes. Scripts rely on them; never renumber one.
#pragma once

namespace migratefs::ctl {

inline constexpr int kExitOk = 0;
// The daemon answered {"ok":false,...}; code and message went to stderr.
inline constexpr int kExitDaemonError = 1;
// Bad command line (unknown subcommand, missing or malformed argument).
inline constexpr int kExitUsage = 2;
// No daemon at the socket path (missing, refused, permission denied).
inline constexpr int kExitCannotConnect = 3;
// Connected, but the connection broke or no answer came within --timeout. The request
// may or may not have been carried out: ask `status` before retrying.
inline constexpr int kExitNoAnswer = 4;
// The request worked and the outcome is bad: `verify` found differing ranges, or a
// migration `watch` followed ended failed or cancelled.
inline constexpr int kExitBadOutcome = 5;

}  // namespace migratefs::ctl
