#include "broker/daemon/task_spec.h"

#include <gtest/gtest.h>

namespace migratefs::broker {
namespace {

using nlohmann::json;

json Good() {
  return {{"vm", "vm1"},         {"images", {"vm1.img", "vm1-data.img"}},
          {"source", "a"},       {"target", "b"},
          {"target_address", "10.78.0.2:7200"},
          {"deadline", 1.7e9},   {"important", true},
          {"path", {"a-s1", "s1-b"}},
          {"sharing", {{"a-s1", {"c"}}}}};
}

TEST(TaskSpec, RoundTrips) {
  auto spec = TaskSpecFromJson(Good());
  ASSERT_TRUE(spec) << spec.error().message;
  EXPECT_EQ(spec.value().images.size(), 2u);
  EXPECT_TRUE(spec.value().important);
  EXPECT_EQ(spec.value().sharing.at("a-s1"), std::vector<std::string>{"c"});
  auto again = TaskSpecFromJson(ToJson(spec.value()));
  ASSERT_TRUE(again);
  EXPECT_EQ(ToJson(again.value()), ToJson(spec.value()));
}

TEST(TaskSpec, ErrorsNameTheField) {
  struct Case {
    const char* key;
    json value;  // null = remove
  };
  for (const Case& c : {Case{"vm", nullptr}, Case{"vm", 3}, Case{"images", json::array()},
                        Case{"images", {1}}, Case{"target_address", "b"},
                        Case{"deadline", "soon"}, Case{"important", "yes"},
                        Case{"path", "a-s1"}, Case{"sharing", {{"a-s1", "c"}}},
                        Case{"priority", "urgent"}, Case{"priority", 1.5}, Case{"rank", "x"},
                        Case{"max_kbps", -1}}) {
    json j = Good();
    if (c.value.is_null()) j.erase(c.key); else j[c.key] = c.value;
    auto spec = TaskSpecFromJson(j);
    ASSERT_FALSE(spec) << c.key;
    EXPECT_NE(spec.error().message.find(std::string("task.") + c.key), std::string::npos)
        << spec.error().message;
  }
}

TEST(TaskSpec, PriorityClassesAndLegacyIntegers) {
  json j = Good();
  j["important"] = false;
  j["priority"] = "low";
  j["max_kbps"] = 2500;
  auto spec = TaskSpecFromJson(j);
  ASSERT_TRUE(spec) << spec.error().message;
  EXPECT_EQ(spec.value().priority, policy::PriorityClass::kLow);
  EXPECT_EQ(spec.value().EffectiveClass(), policy::PriorityClass::kLow);
  EXPECT_EQ(spec.value().max_kbps, 2500);
  EXPECT_EQ(ToJson(spec.value())["priority"], "low");
  j["important"] = true;  // important maps onto high
  EXPECT_EQ(TaskSpecFromJson(j).value().EffectiveClass(), policy::PriorityClass::kHigh);
  j.erase("priority");
  j["important"] = false;
  EXPECT_EQ(TaskSpecFromJson(j).value().priority, policy::PriorityClass::kMedium);
  j["priority"] = 7;  // an older scheduler's ordering key
  auto legacy = TaskSpecFromJson(j);
  ASSERT_TRUE(legacy) << legacy.error().message;
  EXPECT_EQ(legacy.value().rank, 7);
  EXPECT_EQ(legacy.value().priority, policy::PriorityClass::kMedium);
}

}  // namespace
}  // namespace migratefs::broker
