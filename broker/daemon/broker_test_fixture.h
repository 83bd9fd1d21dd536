// The fixture the Broker tests share (broker_test.cc, broker_allocation_test.cc,
// broker_classes_test.cc; marking_test.cc uses TaskOfA): one Broker on host "a" driven
// period by period against the in-memory migratefs (fake_control.h), a fake clock that
// only the test moves, and the peer messages it sends recorded. A test sets config_ (and
// run_command_) first, then calls Make(); completions run inline and the hypervisor
// command exits 0 unless run_command_ says otherwise.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "broker/daemon/broker.h"
#include "broker/daemon/fake_control.h"

namespace migratefs::broker::testing {

class RecordingPeers : public PeerSender {
 public:
  void Send(const std::string& host, nlohmann::json body) override { sent.emplace_back(host, std::move(body)); }
  std::vector<std::pair<std::string, nlohmann::json>> sent;
};

// A task of host "a": `vm` with one image `vm`.img, to b over sections a-s1, s1-b.
inline TaskSpec TaskOfA(const std::string& vm, double deadline_s) {
  TaskSpec spec;
  spec.vm = vm;
  spec.images = {vm + ".img"};
  spec.source = "a";
  spec.target = "b";
  spec.target_address = "10.78.0.2:7200";
  spec.deadline_s = deadline_s;
  spec.path = {"a-s1", "s1-b"};
  return spec;
}

class BrokerFixture : public ::testing::Test {
 protected:
  BrokerFixture() {
    config_.host = "a";
    config_.policy.period_s = 1;
    config_.policy.min_network_bps = 1e5;  // 100 KB/s
  }

  // The fake migratefs, the recorder, the fake clock and run_command_; completion inline.
  BrokerDeps Deps() {
    BrokerDeps deps;
    deps.control = &control_;
    deps.peers = &peers_;
    deps.now = [this] { return now_; };
    deps.run_command = run_command_;
    deps.inline_completion = true;
    return deps;
  }
  // Builds broker_ from config_ as it is now.
  void Make() { broker_ = std::make_unique<Broker>(config_, Deps()); }

  // TaskOfA with its deadline far away.
  TaskSpec Spec(const std::string& vm) const { return TaskOfA(vm, now_ + 100000); }

  // Submits `spec`, simulated by migratefs as `vm`; the migration id ("" = queued,
  // "?" = refused, which fails the test).
  std::string Submit(const TaskSpec& spec, SimulatedVm vm) {
    migrations_.SimulateNext(vm);
    auto id = broker_->Submit(spec);
    EXPECT_TRUE(id) << id.error().message;
    return id ? id.value() : "?";
  }

  // The network limit the broker reports for `vm` (KB/s, 0 = none).
  uint64_t Limit(const std::string& vm) const {
    return broker_->TaskReport(vm).value()["network_limit_kbps"].get<uint64_t>();
  }
  // The network limit migratefs holds for migration `id` (KB/s, 0 = none).
  uint64_t DaemonLimit(const std::string& id) const { return migrations_.network_limit(id); }

  double now_ = 1000;
  FakeMigrations migrations_{[this] { return now_; }};
  FakeControlClient control_{&migrations_};
  RecordingPeers peers_;
  BrokerConfig config_;
  std::function<CommandOutcome(const std::string&)> run_command_ = [](const std::string&) {
    return CommandOutcome{0, false, ""};
  };
  std::unique_ptr<Broker> broker_;
};

}  // namespace migratefs::broker::testing
