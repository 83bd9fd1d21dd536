// printf-style formatting into std::string for the policy's reason lines
// (GCC 12 has no <format>). Internal to broker/policy.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <string>

namespace migratefs::policy::internal {

__attribute__((format(printf, 1, 2))) inline std::string Format(const char* fmt, ...) {
  char buf[256];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, args);
  va_end(args);
  return buf;
}

// Rates in reasons are shown in MB/s (1 MB = 10^6 bytes): readable at 10 Gbit/s.
inline double Mbs(double bytes_per_s) { return bytes_per_s / 1e6; }

}  // namespace migratefs::policy::internal
