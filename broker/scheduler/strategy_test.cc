// Batches, serial-vs-gang edges, contention from broker link samples, section budgets
// and the task file's priority classes.
#include "broker/scheduler/strategy.h"

#include <gtest/gtest.h>

namespace migratefs::scheduler {
namespace {

using nlohmann::json;
using Strings = std::vector<std::string>;

Topology Tree(json budgets = nullptr) {
  json doc = {{"switch", {{{"name", "core"}}, {{"name", "s1"}, {"parent", "core"}},
                          {{"name", "s2"}, {"parent", "core"}}}},
              {"host", {{{"name", "a"}, {"switch", "s1"}, {"broker", "10.0.0.1:7100"}, {"migratefs", "10.0.0.1:7200"}},
                        {{"name", "b"}, {"switch", "s1"}, {"broker", "10.0.0.2:7100"}, {"migratefs", "10.0.0.2:7200"}},
                        {{"name", "c"}, {"switch", "s2"}, {"broker", "10.0.0.3:7100"}, {"migratefs", "10.0.0.3:7200"}},
                        {{"name", "d"}, {"switch", "s2"}, {"broker", "10.0.0.4:7100"}, {"migratefs", "10.0.0.4:7200"}}}}};
  if (!budgets.is_null()) doc["budget"] = budgets;
  auto t = Topology::FromJson(doc, "topo");
  EXPECT_TRUE(t) << t.error().message;
  return t.value();
}

json Task(const std::string& vm, const std::string& source, const std::string& target, const char* priority,
          double size_mb = 0) {
  json t = {{"vm", vm}, {"disks", {vm + ".img"}}, {"source", source}, {"target", target}, {"deadline", 60},
            {"priority", priority}};
  if (size_mb > 0) t["size_mb"] = size_mb;
  return t;
}

Plan MakeFrom(const json& tasks, const Topology& topo) {
  auto parsed = ParseTasks({{"task", tasks}}, "tasks", topo);
  EXPECT_TRUE(parsed) << parsed.error().message;
  return MakePlan(parsed.value(), topo, 1000);
}

TEST(Strategy, TaskFileClassesOrderAndErrors) {
  Topology topo = Tree();
  Plan plan = MakeFrom({Task("l", "a", "b", "low"), Task("m", "a", "b", "medium"), Task("h", "a", "b", "high")}, topo);
  Strings order;
  for (const auto& s : plan.specs) order.push_back(s.vm);
  EXPECT_EQ(order, (Strings{"h", "m", "l"}));
  EXPECT_EQ(plan.specs[0].priority, policy::PriorityClass::kHigh);
  auto bad = ParseTasks({{"task", {Task("x", "a", "b", "urgent")}}}, "tasks.toml", topo);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("task[0]: field \"priority\" must be \"high\", \"medium\" or \"low\""),
            std::string::npos)
      << bad.error().message;
  json neg = Task("x", "a", "b", "low");
  neg["size_mb"] = -3;
  bad = ParseTasks({{"task", {neg}}}, "tasks.toml", topo);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("\"size_mb\""), std::string::npos) << bad.error().message;
}

TEST(Strategy, BatchesJoinTasksBySourceOrSection) {
  Topology topo = Tree();
  // x1, x2 share source a; y1 (c -> d) shares nothing with them; z1 (b -> a) shares a-s1.
  Plan plan = MakeFrom({Task("x1", "a", "b", "low"), Task("y1", "c", "d", "low"), Task("x2", "a", "b", "low"),
                        Task("z1", "b", "a", "low")},
                       topo);
  ASSERT_EQ(plan.batches.size(), 2u);
  EXPECT_EQ(plan.batches[0].vms, (Strings{"x1", "x2", "z1"}));
  EXPECT_EQ(plan.batches[0].sources, (Strings{"a", "b"}));
  EXPECT_EQ(plan.batches[1].vms, (Strings{"y1"}));
}

TEST(Strategy, UtilizationFromTheSourceBrokersLinks) {
  Batch batch{{"x1"}, {"a"}, {"a-s1", "s1-b"}};
  std::map<std::string, json> status = {
      {"a", {{"links", {{{"section", "a-s1"}, {"capacity_kbps", 1000}, {"tx_kbps", 300}, {"rx_kbps", 700}, {"readable", true}},
                        {{"section", "a-s9"}, {"capacity_kbps", 1000}, {"tx_kbps", 990}, {"readable", true}}}}}}};
  EXPECT_DOUBLE_EQ(BatchUtilization(batch, status), 0.7);  // a-s9 is not on the path
  status["a"]["links"].push_back({{"section", ""}, {"capacity_kbps", 1000}, {"tx_kbps", 850}, {"readable", true}});
  EXPECT_DOUBLE_EQ(BatchUtilization(batch, status), 0.85);  // no section: on every path
  EXPECT_EQ(BatchUtilization(batch, {}), -1);
}

TEST(Strategy, LowUnderContentionIsChainedShortestFirstHighStaysParallel) {
  Topology topo = Tree();
  Plan plan = MakeFrom({Task("big", "a", "b", "low", 9000), Task("h", "a", "b", "high"),
                        Task("small", "a", "c", "low", 1000)},
                       topo);
  ApplyStrategies(&plan, topo, {{0, 0.9}}, StrategyMode::kAuto);
  EXPECT_EQ(plan.after, (std::map<std::string, std::string>{{"big", "small"}}));
  ASSERT_EQ(plan.strategies.size(), 1u);
  EXPECT_EQ(plan.strategies[0]["mode"], "mixed");
  EXPECT_EQ(plan.strategies[0]["serial"], json({"small", "big"}));
  EXPECT_EQ(plan.strategies[0]["contention"], "high");
  EXPECT_NE(plan.strategies[0]["reason"].get<std::string>().find("90%"), std::string::npos);
  // Low contention: everything in parallel.
  ApplyStrategies(&plan, topo, {{0, 0.1}}, StrategyMode::kAuto);
  EXPECT_TRUE(plan.after.empty());
  EXPECT_EQ(plan.strategies[0]["mode"], "gang");
  // Forced serial chains even the high one (classes first).
  ApplyStrategies(&plan, topo, {{0, 0.1}}, StrategyMode::kSerial);
  EXPECT_EQ(plan.strategies[0]["serial"], json({"h", "small", "big"}));
  EXPECT_EQ(plan.after.at("small"), "h");
}

TEST(Strategy, SectionBudgetsAreSplitAmongConcurrentTasks) {
  Topology topo = Tree({{{"section", "s1-core"}, {"kbps", 30000}}, {{"section", "a-s1"}, {"kbps", 8000}}});
  EXPECT_EQ(topo.section_budgets().at("s1-core"), 30000);
  // Three tasks cross s1-core, two of them from a (a-s1).
  Plan plan = MakeFrom({Task("x1", "a", "c", "high"), Task("x2", "a", "d", "high"), Task("z", "b", "c", "high"),
                        Task("local", "b", "a", "high")},
                       topo);
  ApplyStrategies(&plan, topo, {{0, 0.1}}, StrategyMode::kAuto);
  std::map<std::string, double> cap;
  for (const auto& s : plan.specs) cap[s.vm] = s.max_kbps;
  EXPECT_DOUBLE_EQ(cap["x1"], 8000.0 / 3);  // min(30000 / 3, 8000 / 3: x1, x2, local on a-s1)
  EXPECT_DOUBLE_EQ(cap["z"], 10000);         // 30000 / 3
  EXPECT_DOUBLE_EQ(cap["local"], 8000.0 / 3);
  // A serial chain on a section counts once: one migration at a time gets it all.
  ApplyStrategies(&plan, topo, {{0, 0.1}}, StrategyMode::kSerial);
  for (const auto& s : plan.specs) cap[s.vm] = s.max_kbps;
  EXPECT_DOUBLE_EQ(cap["z"], 30000);
  EXPECT_DOUBLE_EQ(cap["x1"], 8000);
}

TEST(Strategy, BudgetErrorsNameTheField) {
  json doc = {{"switch", {{{"name", "core"}}}},
              {"host", {{{"name", "a"}, {"switch", "core"}, {"broker", "1.2.3.4:1"}, {"migratefs", "1.2.3.4:2"}}}},
              {"budget", {{{"section", "a-nowhere"}, {"kbps", 5}}}}};
  auto t = Topology::FromJson(doc, "topo");
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("budget[0]: field \"section\""), std::string::npos) << t.error().message;
  doc["budget"] = {{{"section", "a-core"}, {"kbps", 0}}};
  t = Topology::FromJson(doc, "topo");
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("budget[0]: field \"kbps\""), std::string::npos) << t.error().message;
}

}  // namespace
}  // namespace migratefs::scheduler
