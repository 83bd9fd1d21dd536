// A MigrationService for tests: keeps migrations in memory, records every call, and
// lets a test script progress, slow down finish/verify, and emit events.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "migratefs/migration_service.h"

namespace migratefs::control {

class FakeMigrationService : public MigrationService {
 public:
  // --- MigrationService ---
  Result<std::string> Start(const StartRequest& req) override;
  Status SetNetworkLimit(const std::string& id, uint64_t kbps) override;
  Status SetDiskLimit(const std::string& id, uint64_t kbps) override;
  Status SetMirrorMode(const std::string& id, const MirrorMode& mode) override;
  Result<Progress> QueryProgress(const std::string& id, RateKind what) override;
  Result<bool> QueryCompletion(const std::string& id) override;
  Status Finish(const std::string& id) override;
  Status Cancel(const std::string& id, bool keep_partial) override;
  Result<VerifyReport> Verify(const std::string& id) override;
  Status Release(const std::string& id) override;
  std::vector<MigrationInfo> List() override;
  Result<MigrationInfo> GetStatus(const std::string& id) override;
  std::vector<IncomingInfo> Incoming() override;
  std::unique_ptr<Subscription> Subscribe(EventSink sink) override;
  // A made-up profile per image (64 blocks of 512 KiB, block 3 written 10 times a
  // second, data in blocks 0..31), or the one SetProfile gave; blocks like Finish while
  // BlockSlowCalls is in force; never sleeps for the seconds asked. Kept for Predict,
  // which runs the real predictor (broker/policy/hybrid_predictor.h) on it.
  Result<std::vector<policy::ImageProfile>> Profile(const ProfileRequest& req) override;
  Result<policy::Prediction> Predict(const PredictRequest& req) override;

  // --- test controls ---
  // Every call, one line each, e.g. "SetNetworkLimit m1 20000", in call order.
  std::vector<std::string> calls() const;
  // Progress steps of a migration: each query of it (QueryProgress, GetStatus, List)
  // shows the next step, then stays on the last. A step's phase "mirror" or later also
  // sets completed. Start in hybrid mode sets mode and precopy_pct of the initial
  // progress; scripted steps say theirs (Progress::mode, the hybrid counters).
  void ScriptProgress(const std::string& id, std::vector<Progress> steps);
  // Incoming()'s answer (empty until set).
  void SetIncoming(std::vector<IncomingInfo> incoming);
  // Finish and Verify block until Unblock() (or the Stop of the test).
  void BlockSlowCalls();
  void Unblock();
  // Calls every subscriber's sink with `event`, on this thread.
  void Emit(const Event& event);
  size_t subscriber_count() const;
  // Profile's answer for `image` (its name is set to the image's).
  void SetProfile(const std::string& image, policy::ImageProfile profile);
  // Verify's answer.
  void SetVerifyReport(VerifyReport report);

 private:
  struct Migration {
    MigrationInfo info;
    std::vector<Progress> steps;
    size_t next_step = 0;
  };
  class FakeSubscription;

  void Record(std::string call);
  Migration* Find(const std::string& id);  // mu_ held
  MigrationInfo Advance(Migration& m);     // mu_ held
  void WaitUntilUnblocked();

  mutable std::mutex mu_;
  std::condition_variable unblocked_;
  bool blocked_ = false;
  std::vector<std::string> calls_;
  std::map<std::string, Migration> migrations_;
  int next_id_ = 1;
  VerifyReport verify_report_{true, 0, {}};
  std::vector<IncomingInfo> incoming_;
  std::map<std::string, policy::ImageProfile> scripted_profiles_;
  std::map<std::string, policy::ImageProfile> profiles_;  // the last Profile of each image

  mutable std::mutex sinks_mu_;  // held while a sink runs: events are delivered one at a time
  std::map<int, EventSink> sinks_;
  int next_sink_ = 0;
};

}  // namespace migratefs::control
