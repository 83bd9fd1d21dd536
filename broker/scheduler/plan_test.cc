#include "broker/scheduler/plan.h"

#include <gtest/gtest.h>

#include "broker/daemon/test_util.h"

namespace migratefs::scheduler {
namespace {

using nlohmann::json;
using Strings = std::vector<std::string>;

Topology Tree() {
  json doc = {{"switch", {{{"name", "core"}}, {{"name", "s1"}, {"parent", "core"}},
                          {{"name", "s2"}, {"parent", "core"}}}},
              {"host", {{{"name", "a"}, {"switch", "s1"}, {"broker", "10.0.0.1:7100"}, {"migratefs", "10.0.0.1:7200"}},
                        {{"name", "b"}, {"switch", "s1"}, {"broker", "10.0.0.2:7100"}, {"migratefs", "10.0.0.2:7200"}},
                        {{"name", "c"}, {"switch", "s2"}, {"broker", "10.0.0.3:7100"}, {"migratefs", "10.0.0.3:7200"}}}}};
  return Topology::FromJson(doc, "topo").value();
}

json Task(const std::string& vm, const std::string& source, const std::string& target,
          bool important = false, int priority = 0) {
  return {{"vm", vm}, {"disks", {vm + ".img"}}, {"source", source}, {"target", target},
          {"deadline", 60}, {"important", important}, {"priority", priority}};
}

TEST(Plan, SharedSectionsAndWhoToAsk) {
  Topology topo = Tree();
  json doc = {{"task", {Task("vm1", "a", "c"), Task("vm2", "b", "c", true), Task("vm3", "a", "b"),
                        Task("vm4", "c", "b", false, 5)}}};
  auto tasks = ParseTasks(doc, "tasks", topo);
  ASSERT_TRUE(tasks) << tasks.error().message;
  Plan plan = MakePlan(tasks.value(), topo, 1000);
  // Important first, then priority, then file order.
  Strings order;
  for (const auto& s : plan.specs) order.push_back(s.vm);
  EXPECT_EQ(order, (Strings{"vm2", "vm4", "vm1", "vm3"}));
  const broker::TaskSpec& vm1 = plan.specs[2];
  EXPECT_EQ(vm1.path, (Strings{"a-s1", "s1-core", "s2-core", "c-s2"}));
  EXPECT_EQ(vm1.target_address, "10.0.0.3:7200");
  EXPECT_DOUBLE_EQ(vm1.deadline_s, 1060);
  // a-s1: vm3 (from a). s1-core, s2-core: vm2 (from b) and vm4 (from c). c-s2: vm2, vm4.
  EXPECT_EQ(vm1.sharing.at("a-s1"), (Strings{"a"}));
  EXPECT_EQ(vm1.sharing.at("s1-core"), (Strings{"b", "c"}));
  EXPECT_EQ(vm1.sharing.at("c-s2"), (Strings{"b", "c"}));
  EXPECT_EQ(plan.users.at("s1-core"), (Strings{"vm2", "vm4", "vm1"}));
  const broker::TaskSpec& vm3 = plan.specs[3];
  EXPECT_EQ(vm3.path, (Strings{"a-s1", "b-s1"}));
  EXPECT_EQ(vm3.sharing.at("a-s1"), (Strings{"a"}));
  EXPECT_EQ(vm3.sharing.at("b-s1"), (Strings{"b", "c"}));
  json shown = PlanJson(plan);
  EXPECT_EQ(shown["shared_sections"]["a-s1"], json({"vm1", "vm3"}));
}

TEST(Plan, TaskFileErrorsNameTheField) {
  Topology topo = Tree();
  struct Case {
    json task;
    const char* names;
  };
  json no_vm = Task("x", "a", "b");
  no_vm.erase("vm");
  json bad_disks = Task("x", "a", "b");
  bad_disks["disks"] = "x.img";
  json zero = Task("x", "a", "b");
  zero["deadline"] = 0;
  json text_deadline = Task("x", "a", "b");
  text_deadline["deadline"] = "soon";
  json typo = Task("x", "a", "b");
  typo["importnt"] = true;
  for (const Case& c : {Case{no_vm, "task[0]: field \"vm\""},
                        Case{bad_disks, "task[0]: field \"disks\""},
                        Case{zero, "task[0]: field \"deadline\" must be > 0"},
                        Case{text_deadline, "task[0]: field \"deadline\" must be a number"},
                        Case{typo, "task[0]: field \"importnt\" is not a known field"},
                        Case{Task("x", "zz", "b"), "task[0]: field \"source\" names \"zz\""},
                        Case{Task("x", "a", "a"), "task[0]: field \"target\" is the source"}}) {
    auto tasks = ParseTasks({{"task", {c.task}}}, "tasks.toml", topo);
    ASSERT_FALSE(tasks) << c.names;
    EXPECT_NE(tasks.error().message.find(c.names), std::string::npos) << tasks.error().message;
    EXPECT_NE(tasks.error().message.find("tasks.toml"), std::string::npos);
  }
  auto twice = ParseTasks({{"task", {Task("x", "a", "b"), Task("x", "b", "c")}}}, "t", topo);
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message.find("task[1]: field \"vm\" \"x\" is listed twice"), std::string::npos)
      << twice.error().message;
  EXPECT_FALSE(ParseTasks(json::object(), "t", topo));
  broker::testing::ScratchDir dir;
  auto bad_toml = LoadTasks(dir.Write("t.toml", "[[task]]\nvm = \n"), topo);
  ASSERT_FALSE(bad_toml);
  EXPECT_NE(bad_toml.error().message.find("t.toml:2"), std::string::npos) << bad_toml.error().message;
}

}  // namespace
}  // namespace migratefs::scheduler
