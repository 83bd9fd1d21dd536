#include "broker/policy/reservation.h"

#include <gtest/gtest.h>

namespace migratefs::policy {
namespace {

// A 100 MB/s link whose workload must keep 20 MB/s and may use up to 60 MB/s.
LinkReservation Link(double headroom = 0) { return {100e6, 20e6, 60e6, headroom}; }

ClassClaim Claim(PriorityClass c, double want = ClassClaim::kInfinityBps) { return {c, want}; }

TEST(ReservationTest, ValidationNamesTheField) {
  EXPECT_TRUE(ValidateReservation(Link()));
  LinkReservation r = Link();
  r.workload_max_bps = 120e6;  // above the link
  auto s = ValidateReservation(r);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("workload_max_bps"), std::string::npos);
  r = Link();
  r.workload_min_bps = 70e6;  // above max
  s = ValidateReservation(r);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("workload_max_bps"), std::string::npos);
  r = Link();
  r.workload_min_bps = -1;
  EXPECT_NE(ValidateReservation(r).error().message.find("workload_min_bps"), std::string::npos);
  r = Link();
  r.capacity_bps = 0;
  EXPECT_NE(ValidateReservation(r).error().message.find("capacity_bps"), std::string::npos);
}

TEST(ReservationTest, HighTakesEverythingAboveTheLowerLimitWhateverTheWorkload) {
  for (double w : {0.0, 30e6, 60e6, 95e6}) {
    auto s = ReserveBandwidth(Link(), w, {Claim(PriorityClass::kHigh)});
    EXPECT_DOUBLE_EQ(s.ceiling_bps[0], 80e6) << w;
    EXPECT_DOUBLE_EQ(s.workload_kept_bps, 20e6);
  }
}

TEST(ReservationTest, MediumGetsWhatIsLeftAboveTheUpperLimitAndGrowsIntoIdleBandwidth) {
  // Workload at its upper limit or above: the migration gets C - max.
  EXPECT_DOUBLE_EQ(ReserveBandwidth(Link(), 60e6, {Claim(PriorityClass::kMedium)}).ceiling_bps[0], 40e6);
  EXPECT_DOUBLE_EQ(ReserveBandwidth(Link(), 90e6, {Claim(PriorityClass::kMedium)}).ceiling_bps[0], 40e6);
  // The workload leaves bandwidth idle: the migration grows into it...
  EXPECT_DOUBLE_EQ(ReserveBandwidth(Link(), 35e6, {Claim(PriorityClass::kMedium)}).ceiling_bps[0], 65e6);
  // ...but never pushes the workload below its lower limit.
  EXPECT_DOUBLE_EQ(ReserveBandwidth(Link(), 5e6, {Claim(PriorityClass::kMedium)}).ceiling_bps[0], 80e6);
  // Headroom keeps a margin above the observed workload.
  EXPECT_DOUBLE_EQ(ReserveBandwidth(Link(5e6), 35e6, {Claim(PriorityClass::kMedium)}).ceiling_bps[0], 60e6);
}

TEST(ReservationTest, LowGetsOnlyWhatIsLeftAndYieldsFirst) {
  auto alone = ReserveBandwidth(Link(), 70e6, {Claim(PriorityClass::kLow)});
  EXPECT_DOUBLE_EQ(alone.ceiling_bps[0], 30e6);  // C - W, even above the upper limit
  auto idle = ReserveBandwidth(Link(), 0, {Claim(PriorityClass::kLow)});
  EXPECT_DOUBLE_EQ(idle.ceiling_bps[0], 80e6);  // never below the lower limit
  // Beside a medium migration the low one gets what the medium one leaves.
  auto both = ReserveBandwidth(Link(), 30e6, {Claim(PriorityClass::kLow), Claim(PriorityClass::kMedium, 50e6)});
  EXPECT_DOUBLE_EQ(both.ceiling_bps[1], 50e6);
  EXPECT_DOUBLE_EQ(both.ceiling_bps[0], 20e6);
  // The link saturates (workload grows to 95): the low one loses everything first,
  // the medium one keeps C - max.
  auto hot = ReserveBandwidth(Link(), 95e6, {Claim(PriorityClass::kLow), Claim(PriorityClass::kMedium)});
  EXPECT_DOUBLE_EQ(hot.ceiling_bps[0], 0);
  EXPECT_DOUBLE_EQ(hot.ceiling_bps[1], 40e6);
}

TEST(ReservationTest, ClassesAreServedInOrderAndNeverEatTheLowerLimit) {
  // high + medium + low together: high takes 80, nothing left for the others.
  auto s = ReserveBandwidth(Link(), 10e6, {Claim(PriorityClass::kLow), Claim(PriorityClass::kMedium),
                                           Claim(PriorityClass::kHigh)});
  EXPECT_DOUBLE_EQ(s.ceiling_bps[2], 80e6);
  EXPECT_DOUBLE_EQ(s.ceiling_bps[1], 0);
  EXPECT_DOUBLE_EQ(s.ceiling_bps[0], 0);
  // A high migration that only needs 30: medium grows, low gets the rest.
  s = ReserveBandwidth(Link(), 10e6, {Claim(PriorityClass::kLow), Claim(PriorityClass::kMedium, 30e6),
                                      Claim(PriorityClass::kHigh, 30e6)});
  EXPECT_DOUBLE_EQ(s.ceiling_bps[2], 30e6);
  EXPECT_DOUBLE_EQ(s.ceiling_bps[1], 30e6);
  EXPECT_DOUBLE_EQ(s.ceiling_bps[0], 20e6);
  EXPECT_DOUBLE_EQ(s.workload_kept_bps, 20e6);
  // Two of one class share it max-min fairly.
  s = ReserveBandwidth(Link(), 60e6, {Claim(PriorityClass::kMedium), Claim(PriorityClass::kMedium, 10e6)});
  EXPECT_DOUBLE_EQ(s.ceiling_bps[0], 30e6);
  EXPECT_DOUBLE_EQ(s.ceiling_bps[1], 10e6);
  // Whatever the mix and the workload, the total never exceeds C - min.
  for (double w : {0.0, 10e6, 40e6, 70e6, 100e6, 150e6}) {
    auto m = ReserveBandwidth(Link(3e6), w, {Claim(PriorityClass::kLow), Claim(PriorityClass::kMedium),
                                             Claim(PriorityClass::kHigh, 5e6), Claim(PriorityClass::kLow)});
    double total = 0;
    for (double c : m.ceiling_bps) total += c;
    EXPECT_LE(total, 80e6 + 1) << w;
    EXPECT_GE(m.workload_kept_bps, 20e6 - 1) << w;
  }
}

}  // namespace
}  // namespace migratefs::policy
