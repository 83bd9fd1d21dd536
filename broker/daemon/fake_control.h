// Test doubles for the local migratefs (not linked into the daemon):
//  - FakeMigrations: in-memory migrations whose progress is either scripted (a list
//    of Progress steps, one per query_progress{network}) or simulated from the limits
//    the broker sets (a VM writing at some rate over a link of some capacity).
//  - FakeControlClient: a ControlClient straight onto FakeMigrations.
//  - FakeControlServer: FakeMigrations behind a real UNIX JSON-lines control socket,
//    answering the DESIGN.md ops, so the socket client and the broker binary are
//    tested without FUSE.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "broker/daemon/control_client.h"
#include "broker/daemon/line_socket.h"

namespace migratefs::broker::testing {

// A VM whose disk copy moves at min(link, network limit) and which writes at
// min(write, disk limit); `dirty_share` of its writes dirty already-sent blocks.
struct SimulatedVm {
  double bytes_total = 0;
  double link_kbps = 0;
  double write_kbps = 0;
  double dirty_share = 1.0;
};

class FakeMigrations {
 public:
  // `now` in seconds (any origin) drives simulated migrations.
  explicit FakeMigrations(std::function<double()> now = nullptr);

  // The next Start gets this script (or simulation); without one a migration stays
  // in "bulk" with nothing moving.
  void ScriptNext(std::vector<Progress> steps);
  void SimulateNext(SimulatedVm vm);
  // Makes every call fail with peer_unreachable (a dead daemon) until cleared.
  void SetUnreachable(bool unreachable);
  // Refuses the next start with this error.
  void RefuseNextStart(Error error);

  // One line per call, e.g. "set_network_limit m1 500", in call order.
  std::vector<std::string> calls() const;
  // The network/disk limits currently set on `id` (KB/s, 0 = none).
  uint64_t network_limit(const std::string& id) const;
  uint64_t disk_limit(const std::string& id) const;

  // The ControlClient surface.
  Result<std::string> Start(const std::vector<std::string>& images, const std::string& target,
                            const Marking& marking = {}, uint64_t network_kbps = 0);
  // The marking the n-th start (0-based) carried.
  Marking start_marking(size_t n) const;
  Status SetLimit(const std::string& id, RateKind kind, uint64_t kbps);
  Result<Progress> QueryProgress(const std::string& id, RateKind what);
  Result<bool> QueryCompletion(const std::string& id);
  Status Finish(const std::string& id);
  Status Cancel(const std::string& id);

  // Executes one control-socket request line, answers one line (what migratefs would).
  nlohmann::json Execute(const nlohmann::json& request);

 private:
  struct Migration {
    std::vector<std::string> images;
    std::vector<Progress> steps;
    size_t next_step = 0;
    std::unique_ptr<SimulatedVm> sim;
    double bytes_left = 0, bytes_sent = 0, last_s = 0;
    Progress current;
    uint64_t net_limit = 0, disk_limit = 0;
    bool finished = false, cancelled = false;
  };
  Migration* Find(const std::string& id);  // mu_ held
  void Advance(Migration& m);              // mu_ held; one step or simulate up to now
  Status Reachable() const;                // mu_ held
  void Record(std::string call);           // mu_ held

  std::function<double()> now_;
  mutable std::mutex mu_;
  std::vector<std::string> calls_;
  std::vector<Marking> start_markings_;
  std::map<std::string, Migration> migrations_;
  std::vector<Progress> next_script_;
  std::unique_ptr<SimulatedVm> next_sim_;
  std::optional<Error> refuse_next_;
  bool unreachable_ = false;
  int next_id_ = 1;
};

class FakeControlClient : public ControlClient {
 public:
  explicit FakeControlClient(FakeMigrations* m) : m_(m) {}
  Result<std::string> Start(const std::vector<std::string>& images, const std::string& target,
                            const Marking& marking, uint64_t network_kbps) override {
    return m_->Start(images, target, marking, network_kbps);
  }
  Status SetNetworkLimit(const std::string& id, uint64_t kbps) override {
    return m_->SetLimit(id, RateKind::kNetwork, kbps);
  }
  Status SetDiskLimit(const std::string& id, uint64_t kbps) override {
    return m_->SetLimit(id, RateKind::kDisk, kbps);
  }
  Result<Progress> QueryProgress(const std::string& id, RateKind what) override {
    return m_->QueryProgress(id, what);
  }
  Result<bool> QueryCompletion(const std::string& id) override { return m_->QueryCompletion(id); }
  Status Finish(const std::string& id) override { return m_->Finish(id); }
  Status Cancel(const std::string& id) override { return m_->Cancel(id); }

 private:
  FakeMigrations* m_;
};

class FakeControlServer {
 public:
  // Serves `migrations` on a UNIX socket at `path` until destroyed.
  static Result<std::unique_ptr<FakeControlServer>> Start(const std::string& path,
                                                          FakeMigrations* migrations);
  ~FakeControlServer();
  // Requests received, raw lines, in order.
  std::vector<std::string> lines() const;

 private:
  FakeControlServer() = default;
  void Loop();
  std::string path_;
  FakeMigrations* migrations_ = nullptr;
  Fd listen_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
};

}  // namespace migratefs::broker::testing
