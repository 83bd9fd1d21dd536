#include "broker/policy/priority_class.h"

#include <gtest/gtest.h>

namespace migratefs::policy {
namespace {

TEST(PriorityClassTest, ParsesTheThreeNamesAndRoundTrips) {
  for (PriorityClass c : {PriorityClass::kHigh, PriorityClass::kMedium, PriorityClass::kLow}) {
    auto parsed = ParsePriorityClass(ToString(c), "priority");
    ASSERT_TRUE(parsed) << parsed.error().message;
    EXPECT_EQ(parsed.value(), c);
  }
}

TEST(PriorityClassTest, RejectsAnythingElseNamingTheField) {
  for (const char* bad : {"", "High", "urgent", "0", "med"}) {
    auto parsed = ParsePriorityClass(bad, "task[2].priority");
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().code, errc::kInvalidArgument);
    EXPECT_NE(parsed.error().message.find("task[2].priority"), std::string::npos);
    EXPECT_NE(parsed.error().message.find("\"medium\""), std::string::npos);
  }
}

TEST(PriorityClassTest, ImportantMapsOntoHigh) {
  EXPECT_EQ(EffectiveClass(PriorityClass::kLow, true), PriorityClass::kHigh);
  EXPECT_EQ(EffectiveClass(PriorityClass::kMedium, true), PriorityClass::kHigh);
  EXPECT_EQ(EffectiveClass(PriorityClass::kLow, false), PriorityClass::kLow);
  EXPECT_EQ(kDefaultPriorityClass, PriorityClass::kMedium);
}

}  // namespace
}  // namespace migratefs::policy
