#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "migratefs/policy.h"

namespace migratefs::policy {
namespace {

TEST(ValidateConfig, DefaultsAreThePapers) {
  Config c;
  EXPECT_TRUE(ValidateConfig(c).ok());
  EXPECT_EQ(c.danger_pct, 300);
  EXPECT_EQ(c.warning_pct, 400);
  EXPECT_EQ(c.period_s, 60);
}

// Each bad value is rejected with a message naming its field.
void ExpectRejected(const std::function<void(Config&)>& spoil, const std::string& field) {
  Config c;
  spoil(c);
  Status s = ValidateConfig(c);
  ASSERT_FALSE(s.ok()) << field;
  EXPECT_EQ(s.error().code, errc::kInvalidArgument);
  EXPECT_NE(s.error().message.find(field), std::string::npos) << s.error().message;
}

TEST(ValidateConfig, NamesTheBadField) {
  ExpectRejected([](Config& c) { c.period_s = 0; }, "period_s");
  ExpectRejected([](Config& c) { c.danger_pct = 100; }, "danger_pct");
  ExpectRejected([](Config& c) { c.warning_pct = 300; }, "warning_pct");
  ExpectRejected([](Config& c) { c.increase_bps = 0; }, "increase_bps");
  ExpectRejected([](Config& c) { c.quiet_periods = -1; }, "quiet_periods");
  ExpectRejected([](Config& c) { c.min_network_bps = 999; }, "min_network_bps");
  ExpectRejected([](Config& c) { c.min_disk_bps = 0; }, "min_disk_bps");
  ExpectRejected([](Config& c) { c.disk_target_pct = 99; }, "disk_target_pct");
  ExpectRejected([](Config& c) { c.danger_pct = 1.0 / 0.0; }, "danger_pct");
}

}  // namespace
}  // namespace migratefs::policy
