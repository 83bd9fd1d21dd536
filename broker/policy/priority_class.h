// Priority classes of migration tasks (seed 003: high, medium, low) and how they are
// named in task files, the broker API and migratectl. broker/policy/README.md
// "Priority classes and reservations (seed 003)".
//
// Pure: no I/O, no clocks, no threads, no randomness.
#pragma once

#include <string>

#include "migratefs/status.h"

namespace migratefs::policy {

// Ordered: a smaller value is more urgent (kHigh < kMedium < kLow).
enum class PriorityClass {
  kHigh = 0,    // may take everything above the workload's lower limit
  kMedium = 1,  // what is left above the workload's upper limit, grows into idle bandwidth
  kLow = 2,     // only what is left; yields first when a link saturates
};

// The class a task gets when it names none (and is not important).
inline constexpr PriorityClass kDefaultPriorityClass = PriorityClass::kMedium;

// "high" | "medium" | "low" (exactly, lower case). Anything else is
// errc::kInvalidArgument with a message that names `field` and lists the choices.
Result<PriorityClass> ParsePriorityClass(const std::string& text, const std::string& field);

const char* ToString(PriorityClass c);

// The class a task runs under: `important` (the old flag) maps onto kHigh whatever
// `named` says; otherwise `named`.
PriorityClass EffectiveClass(PriorityClass named, bool important);

}  // namespace migratefs::policy
