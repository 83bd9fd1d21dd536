#include "broker/policy/priority_class.h"

namespace migratefs::policy {

Result<PriorityClass> ParsePriorityClass(const std::string& text, const std::string& field) {
  if (text == "high") return PriorityClass::kHigh;
  if (text == "medium") return PriorityClass::kMedium;
  if (text == "low") return PriorityClass::kLow;
  return MakeError(errc::kInvalidArgument, "field \"" + field + "\" must be \"high\", \"medium\" or \"low\", got \"" +
                                               text + "\"");
}

const char* ToString(PriorityClass c) {
  switch (c) {
    case PriorityClass::kHigh: return "high";
    case PriorityClass::kMedium: return "medium";
    case PriorityClass::kLow: return "low";
  }
  return "?";
}

PriorityClass EffectiveClass(PriorityClass named, bool important) {
  return important ? PriorityClass::kHigh : named;
}

}  // namespace migratefs::policy
