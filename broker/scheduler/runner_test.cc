// The scheduler against in-process brokers on real TCP sockets (fake migratefs
// behind each), with a fake clock that the scheduler's sleeps advance.
#include "broker/scheduler/runner.h"

#include <gtest/gtest.h>

#include "broker/daemon/broker_server.h"
#include "broker/daemon/fake_control.h"

namespace migratefs::scheduler {
namespace {

using nlohmann::json;
using broker::testing::FakeControlClient;
using broker::testing::FakeMigrations;

const char* kKey = "0123456789abcdef0123";

class NoPeers : public broker::PeerSender {
 public:
  void Send(const std::string&, json) override {}
};

// One host: fake migratefs + Broker + its TCP server.
struct Host {
  Host(const std::string& name, double* clock) : migrations([clock] { return *clock; }), control(&migrations) {
    config.host = name;
    config.policy.period_s = 1;
    config.key = kKey;
    config.listen = "127.0.0.1:0";
    config.hypervisor_command = "true {vm}";
    broker::BrokerDeps deps;
    deps.control = &control;
    deps.peers = &peers;
    deps.now = [clock] { return *clock; };
    deps.run_command = [this](const std::string& c) {
      hooks.push_back(c);
      return broker::CommandOutcome{0, false, ""};
    };
    deps.inline_completion = true;
    broker = std::make_unique<broker::Broker>(config, deps);
    verifier = std::make_unique<broker::MessageVerifier>(kKey, 30);
    server = std::move(broker::BrokerServer::Start(config, broker.get(), verifier.get(),
                                                   [clock] { return *clock; }).value());
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(server->tcp_port()); }

  broker::BrokerConfig config;
  FakeMigrations migrations;
  FakeControlClient control;
  NoPeers peers;
  std::vector<std::string> hooks;
  std::unique_ptr<broker::Broker> broker;
  std::unique_ptr<broker::MessageVerifier> verifier;
  std::unique_ptr<broker::BrokerServer> server;
};

TEST(Runner, SubmitsPollsAndReportsDespiteDeadBrokers) {
  double clock = 1e9;
  Host a("a", &clock), b("b", &clock);
  json topo = {{"switch", {{{"name", "sw"}}}},
               {"host", {{{"name", "a"}, {"switch", "sw"}, {"broker", a.address()}, {"migratefs", "10.0.0.1:7200"}},
                         {{"name", "b"}, {"switch", "sw"}, {"broker", b.address()}, {"migratefs", "10.0.0.2:7200"}},
                         {{"name", "c"}, {"switch", "sw"}, {"broker", "127.0.0.1:1"}, {"migratefs", "10.0.0.3:7200"}}}}};
  Topology topology = Topology::FromJson(topo, "topo").value();
  json tasks = {{"task", {{{"vm", "vm1"}, {"disks", {"vm1.img"}}, {"source", "a"}, {"target", "b"}, {"deadline", 30}},
                          {{"vm", "vm2"}, {"disks", {"vm2.img"}}, {"source", "b"}, {"target", "a"}, {"deadline", 30}},
                          {{"vm", "vm3"}, {"disks", {"vm3.img"}}, {"source", "c"}, {"target", "a"}, {"deadline", 30}}}}};
  a.migrations.SimulateNext({20e6, 10000, 0, 1});  // 2 s of copy
  b.migrations.SimulateNext({1e12, 10000, 0, 1});  // never done in time
  Plan plan = MakePlan(ParseTasks(tasks, "tasks", topology).value(), topology, clock);
  RunOptions o;
  o.key = kKey;
  o.rpc_timeout_s = 1;
  o.timeout_s = 40;
  o.now = [&clock] { return clock; };
  int sleeps = 0;
  o.sleep = [&](double s) {
    clock += s;
    a.broker->Tick({});
    b.broker->Tick({});
    if (++sleeps == 2) b.server->Stop();  // broker b vanishes mid-run
  };
  json report = RunPlan(plan, topology, o);
  ASSERT_EQ(report["tasks"].size(), 3u);
  std::map<std::string, json> by_vm;
  for (const json& t : report["tasks"]) by_vm[t["vm"]] = t;

  EXPECT_EQ(by_vm["vm1"]["state"], "finished") << report.dump(1);
  EXPECT_EQ(by_vm["vm1"]["met_deadline"], true);
  EXPECT_EQ(by_vm["vm1"]["hypervisor"]["ran"], true);
  EXPECT_EQ(by_vm["vm1"]["bytes_total"], 20000000);
  EXPECT_EQ(a.hooks, (std::vector<std::string>{"true 'vm1'"}));

  EXPECT_EQ(by_vm["vm2"]["state"], "running");
  EXPECT_EQ(by_vm["vm2"]["broker_reachable"], false);
  EXPECT_EQ(by_vm["vm2"]["met_deadline"], false);  // the deadline passed unfinished

  EXPECT_EQ(by_vm["vm3"]["state"], "not_submitted");
  EXPECT_NE(by_vm["vm3"]["error"].get<std::string>().find("submit to c"), std::string::npos);

  EXPECT_EQ(report["summary"]["met"], 1);
  EXPECT_EQ(report["summary"]["failed"], 1);
  EXPECT_EQ(report["summary"]["unfinished"], 1);
  EXPECT_FALSE(AllMet(report));
  EXPECT_EQ(report["shared_sections"]["a-sw"], json({"vm1", "vm2", "vm3"}));
  EXPECT_LE(clock, 1e9 + 41);
}

TEST(Runner, LowPriorityUnderContentionRunsOneAfterAnother) {
  double clock = 1e9;
  Host a("a", &clock), b("b", &clock);
  json topo = {{"switch", {{{"name", "sw"}}}},
               {"host", {{{"name", "a"}, {"switch", "sw"}, {"broker", a.address()}, {"migratefs", "10.0.0.1:7200"}},
                         {{"name", "b"}, {"switch", "sw"}, {"broker", b.address()}, {"migratefs", "10.0.0.2:7200"}}}}};
  Topology topology = Topology::FromJson(topo, "topo").value();
  json tasks = {{"task", {{{"vm", "big"}, {"disks", {"big.img"}}, {"source", "a"}, {"target", "b"}, {"deadline", 60},
                           {"priority", "low"}, {"size_mb", 30}},
                          {{"vm", "small"}, {"disks", {"small.img"}}, {"source", "a"}, {"target", "b"}, {"deadline", 60},
                           {"priority", "low"}, {"size_mb", 20}}}}};
  // Broker a's link is 85 % busy: high contention.
  a.broker->Tick({{"eth0", "a-sw", 10000, 8500, 0, true, false}});
  a.migrations.SimulateNext({20e6, 10000, 0, 1});  // small: the shorter one goes first
  Plan plan = MakePlan(ParseTasks(tasks, "tasks", topology).value(), topology, clock);
  RunOptions o;
  o.key = kKey;
  o.rpc_timeout_s = 1;
  o.timeout_s = 50;
  o.now = [&clock] { return clock; };
  bool armed = false;
  o.sleep = [&](double s) {
    clock += s;
    a.broker->Tick({});
    // The second start gets its own simulation once the first one is done.
    if (!armed && a.broker->TaskReport("small") && a.broker->TaskReport("small").value()["state"] == "finished") {
      a.migrations.SimulateNext({30e6, 10000, 0, 1});
      armed = true;
    }
  };
  json report = RunPlan(plan, topology, o);
  std::map<std::string, json> by_vm;
  for (const json& t : report["tasks"]) by_vm[t["vm"]] = t;
  ASSERT_EQ(report["strategies"].size(), 1u) << report.dump(1);
  EXPECT_EQ(report["strategies"][0]["mode"], "serial");
  EXPECT_EQ(report["strategies"][0]["contention"], "high");
  EXPECT_EQ(report["strategies"][0]["serial"], json({"small", "big"}));
  EXPECT_EQ(by_vm["big"]["after"], "small");
  EXPECT_EQ(by_vm["small"]["state"], "finished") << report.dump(1);
  EXPECT_EQ(by_vm["big"]["state"], "finished") << report.dump(1);
  EXPECT_GE(by_vm["big"]["submitted"].get<double>(), by_vm["small"]["finished"].get<double>());
  EXPECT_EQ(report["summary"]["met"], 2);
}

TEST(Runner, WrongKeyIsReportedNotHung) {
  double clock = 1e9;
  Host a("a", &clock);
  json topo = {{"switch", {{{"name", "sw"}}}},
               {"host", {{{"name", "a"}, {"switch", "sw"}, {"broker", a.address()}, {"migratefs", "10.0.0.1:7200"}},
                         {{"name", "b"}, {"switch", "sw"}, {"broker", "127.0.0.1:1"}, {"migratefs", "10.0.0.2:7200"}}}}};
  Topology topology = Topology::FromJson(topo, "topo").value();
  json tasks = {{"task", {{{"vm", "vm1"}, {"disks", {"vm1.img"}}, {"source", "a"}, {"target", "b"}, {"deadline", 30}}}}};
  Plan plan = MakePlan(ParseTasks(tasks, "tasks", topology).value(), topology, clock);
  RunOptions o;
  o.key = "not-the-right-key-at-all";
  o.now = [&clock] { return clock; };
  o.sleep = [&clock](double s) { clock += s; };
  json report = RunPlan(plan, topology, o);
  EXPECT_EQ(report["tasks"][0]["state"], "not_submitted");
  EXPECT_NE(report["tasks"][0]["error"].get<std::string>().find("auth_failed"), std::string::npos)
      << report.dump(1);
  EXPECT_TRUE(a.broker->StatusReport()["tasks"].empty());
}

}  // namespace
}  // namespace migratefs::scheduler
