#include "broker/ctl/submit_request.h"

#include <gtest/gtest.h>

namespace migratefs::ctl {
namespace {

SubmitArgs Good() {
  SubmitArgs a;
  a.vm = "vm1";
  a.images = {"vm1.img"};
  a.source = "h1";
  a.target = "h2";
  a.target_address = "10.0.0.2:7200";
  a.deadline_in_s = 600;
  return a;
}

TEST(SubmitRequest, CarriesThePriorityClassAndAnAbsoluteDeadline) {
  SubmitArgs a = Good();
  a.priority = "high";
  auto r = BuildSubmitRequest(a, 1000);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r.value()["op"], "submit");
  EXPECT_EQ(r.value()["task"]["priority"], "high");
  EXPECT_EQ(r.value()["task"]["deadline"], 1600);
  EXPECT_FALSE(r.value()["task"].contains("path"));
  EXPECT_EQ(BuildSubmitRequest(Good(), 0).value()["task"]["priority"], "medium");
}

TEST(SubmitRequest, BadInputNamesTheOption) {
  SubmitArgs a = Good();
  a.priority = "urgent";
  auto r = BuildSubmitRequest(a, 0);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("--priority"), std::string::npos);
  a = Good();
  a.deadline_in_s = 0;
  EXPECT_NE(BuildSubmitRequest(a, 0).error().message.find("--deadline"), std::string::npos);
  a = Good();
  a.target_address = "nowhere";
  EXPECT_NE(BuildSubmitRequest(a, 0).error().message.find("--target"), std::string::npos);
}

}  // namespace
}  // namespace migratefs::ctl
