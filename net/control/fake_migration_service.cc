#include "net/control/fake_migration_service.h"

#include <cstdio>
#include <cstring>

#include "broker/policy/predict_format.h"
#include <utility>

namespace migratefs::control {

namespace {

Error UnknownId(const std::string& id) {
  return MakeError(errc::kUnknownId, "no migration with id \"" + id + "\"");
}

bool IsCompletedPhase(const std::string& phase) {
  return phase == phase::kMirror || phase == phase::kPostcopy || phase == phase::kFinished;
}

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& part : parts) out += (out.empty() ? "" : ",") + part;
  return out;
}

}  // namespace

class FakeMigrationService::FakeSubscription : public Subscription {
 public:
  FakeSubscription(FakeMigrationService* owner, int key) : owner_(owner), key_(key) {}
  ~FakeSubscription() override {
    std::lock_guard<std::mutex> lock(owner_->sinks_mu_);
    owner_->sinks_.erase(key_);
  }

 private:
  FakeMigrationService* owner_;
  int key_;
};

void FakeMigrationService::Record(std::string call) {
  std::lock_guard<std::mutex> lock(mu_);
  calls_.push_back(std::move(call));
}

FakeMigrationService::Migration* FakeMigrationService::Find(const std::string& id) {
  auto it = migrations_.find(id);
  return it == migrations_.end() ? nullptr : &it->second;
}

MigrationInfo FakeMigrationService::Advance(Migration& m) {
  if (!m.steps.empty()) {
    m.info.progress = m.steps[std::min(m.next_step, m.steps.size() - 1)];
    if (m.next_step < m.steps.size()) ++m.next_step;
    m.info.completed = IsCompletedPhase(m.info.progress.phase);
  }
  return m.info;
}

Result<std::string> FakeMigrationService::Start(const StartRequest& req) {
  Record("Start " + Join(req.images) + " -> " + req.target + " net=" + std::to_string(req.network_kbps) +
         " disk=" + std::to_string(req.disk_kbps) +
         (req.mirror.async ? " mirror=async:" + std::to_string(req.mirror.backlog_max_bytes) : "") +
         (req.dscp ? " dscp=" + std::to_string(*req.dscp) : "") +
         (req.so_priority ? " so_priority=" + std::to_string(*req.so_priority) : "") +
         (req.copy.hybrid ? " hybrid=" + std::to_string(req.copy.precopy_pct) + "%:" +
                                std::to_string(req.copy.postcopy_timeout_s) + "s"
                          : ""));
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& image : req.images) {
    if (image.find("..") != std::string::npos || image.front() == '/') {
      return MakeError(errc::kBadName, "image name escapes the served directory: " + image);
    }
  }
  std::string id = "m" + std::to_string(next_id_++);
  Migration& m = migrations_[id];
  m.info.id = id;
  m.info.images = req.images;
  m.info.target = req.target;
  m.info.progress.phase = phase::kBulk;
  m.info.progress.network_limit_kbps = req.network_kbps;
  m.info.progress.disk_limit_kbps = req.disk_kbps;
  m.info.progress.dscp = req.dscp;
  m.info.progress.so_priority = req.so_priority;
  if (req.copy.hybrid) {
    m.info.progress.mode = "hybrid";
    m.info.progress.precopy_pct = req.copy.precopy_pct;
  }
  return id;
}

Status FakeMigrationService::SetNetworkLimit(const std::string& id, uint64_t kbps) {
  Record("SetNetworkLimit " + id + " " + std::to_string(kbps));
  std::lock_guard<std::mutex> lock(mu_);
  Migration* m = Find(id);
  if (!m) return UnknownId(id);
  m->info.progress.network_limit_kbps = kbps;
  return OkStatus();
}

Status FakeMigrationService::SetMirrorMode(const std::string& id, const MirrorMode& mode) {
  Record("SetMirrorMode " + id + " " + (mode.async ? "async " + std::to_string(mode.backlog_max_bytes) : "sync"));
  std::lock_guard<std::mutex> lock(mu_);
  Migration* m = Find(id);
  if (!m) return UnknownId(id);
  m->info.progress.mirror_mode = mode.async ? "async" : "sync";
  m->info.progress.backlog_max_bytes = mode.async ? mode.backlog_max_bytes : 0;
  return OkStatus();
}

Status FakeMigrationService::SetDiskLimit(const std::string& id, uint64_t kbps) {
  Record("SetDiskLimit " + id + " " + std::to_string(kbps));
  std::lock_guard<std::mutex> lock(mu_);
  Migration* m = Find(id);
  if (!m) return UnknownId(id);
  m->info.progress.disk_limit_kbps = kbps;
  return OkStatus();
}

Result<Progress> FakeMigrationService::QueryProgress(const std::string& id, RateKind what) {
  Record(std::string("QueryProgress ") + id +
         (what == RateKind::kNetwork ? " network" : " disk"));
  std::lock_guard<std::mutex> lock(mu_);
  Migration* m = Find(id);
  if (!m) return UnknownId(id);
  Progress p = Advance(*m).progress;
  p.kbps = what == RateKind::kNetwork ? p.network_kbps : p.disk_kbps;
  return p;
}

Result<bool> FakeMigrationService::QueryCompletion(const std::string& id) {
  Record("QueryCompletion " + id);
  std::lock_guard<std::mutex> lock(mu_);
  Migration* m = Find(id);
  if (!m) return UnknownId(id);
  return m->info.completed;
}

Status FakeMigrationService::Finish(const std::string& id) {
  Record("Finish " + id);
  WaitUntilUnblocked();
  std::lock_guard<std::mutex> lock(mu_);
  Migration* m = Find(id);
  if (!m) return UnknownId(id);
  // Hybrid: the target now runs the VM and fetches the rest (like the engine).
  bool hybrid = m->info.progress.mode == "hybrid";
  m->info.progress.phase = hybrid ? phase::kPostcopy : phase::kFinished;
  return OkStatus();
}

Status FakeMigrationService::Cancel(const std::string& id, bool keep_partial) {
  Record("Cancel " + id + (keep_partial ? " keep_partial" : ""));
  std::lock_guard<std::mutex> lock(mu_);
  Migration* m = Find(id);
  if (!m) return UnknownId(id);
  const Progress& p = m->info.progress;
  if (p.mode == "hybrid" && (p.phase == phase::kPostcopy || p.phase == phase::kFinished)) {
    return MakeError(errc::kWrongState, "cancel after finish in hybrid mode: the target runs the VM and holds the only current copy");
  }
  m->info.progress.phase = phase::kCancelled;
  return OkStatus();
}

Result<VerifyReport> FakeMigrationService::Verify(const std::string& id) {
  Record("Verify " + id);
  WaitUntilUnblocked();
  std::lock_guard<std::mutex> lock(mu_);
  if (!Find(id)) return UnknownId(id);
  return verify_report_;
}

Status FakeMigrationService::Release(const std::string& id) {
  Record("Release " + id);
  std::lock_guard<std::mutex> lock(mu_);
  if (!Find(id)) return UnknownId(id);
  return OkStatus();
}

std::vector<MigrationInfo> FakeMigrationService::List() {
  Record("List");
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<MigrationInfo> out;
  for (auto& [id, m] : migrations_) out.push_back(Advance(m));
  return out;
}

Result<MigrationInfo> FakeMigrationService::GetStatus(const std::string& id) {
  Record("GetStatus " + id);
  std::lock_guard<std::mutex> lock(mu_);
  Migration* m = Find(id);
  if (!m) return UnknownId(id);
  return Advance(*m);
}

std::vector<IncomingInfo> FakeMigrationService::Incoming() {
  Record("Incoming");
  std::lock_guard<std::mutex> lock(mu_);
  return incoming_;
}

std::unique_ptr<MigrationService::Subscription> FakeMigrationService::Subscribe(
    EventSink sink) {
  Record("Subscribe");
  std::lock_guard<std::mutex> lock(sinks_mu_);
  int key = next_sink_++;
  sinks_[key] = std::move(sink);
  return std::make_unique<FakeSubscription>(this, key);
}

std::vector<std::string> FakeMigrationService::calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

void FakeMigrationService::ScriptProgress(const std::string& id, std::vector<Progress> steps) {
  std::lock_guard<std::mutex> lock(mu_);
  Migration* m = Find(id);
  if (!m) return;
  m->steps = std::move(steps);
  m->next_step = 0;
}

void FakeMigrationService::BlockSlowCalls() {
  std::lock_guard<std::mutex> lock(mu_);
  blocked_ = true;
}

void FakeMigrationService::Unblock() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    blocked_ = false;
  }
  unblocked_.notify_all();
}

void FakeMigrationService::WaitUntilUnblocked() {
  std::unique_lock<std::mutex> lock(mu_);
  unblocked_.wait(lock, [this] { return !blocked_; });
}

void FakeMigrationService::Emit(const Event& event) {
  std::lock_guard<std::mutex> lock(sinks_mu_);
  for (auto& [key, sink] : sinks_) sink(event);
}

size_t FakeMigrationService::subscriber_count() const {
  std::lock_guard<std::mutex> lock(sinks_mu_);
  return sinks_.size();
}

void FakeMigrationService::SetIncoming(std::vector<IncomingInfo> incoming) {
  std::lock_guard<std::mutex> lock(mu_);
  incoming_ = std::move(incoming);
}

Result<std::vector<policy::ImageProfile>> FakeMigrationService::Profile(const ProfileRequest& req) {
  Record("Profile " + Join(req.images) + " " + std::to_string(req.seconds) + "s");
  WaitUntilUnblocked();
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<policy::ImageProfile> out;
  for (const std::string& image : req.images) {
    if (image.find("..") != std::string::npos || image.front() == '/') {
      return MakeError(errc::kBadName, "image name escapes the served directory: " + image);
    }
    if (image.find("missing") != std::string::npos) {
      return MakeError(errc::kNotFound, "image \"" + image + "\" does not exist");
    }
    policy::ImageProfile p;
    if (auto it = scripted_profiles_.find(image); it != scripted_profiles_.end()) {
      p = it->second;
    } else {
      p.image_bytes = 64 * policy::kDefaultBlockBytes;
      p.window_s = double(req.seconds);
      p.writes = {{3, 10.0 * double(req.seconds)}};
      p.data_known = true;
      p.data = {{0, 32}};
      p.write_bytes = 4096;
    }
    p.name = image;
    out.push_back(p);
  }
  for (const policy::ImageProfile& p : out) profiles_[p.name] = p;
  return out;
}

Result<policy::Prediction> FakeMigrationService::Predict(const PredictRequest& req) {
  char step[32];
  std::snprintf(step, sizeof(step), "%g", req.step);
  Record("Predict " + Join(req.images) + " net=" + std::to_string(req.net_kbps) + " step=" + step);
  policy::PredictInput in;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& image : req.images) {
      auto it = profiles_.find(image);
      if (it == profiles_.end()) return MakeError(errc::kWrongState, "no profile of " + image + ": run profile first");
      in.images.push_back(it->second);
    }
  }
  in.net_bps = double(req.net_kbps) * 1000;
  in.rtt_s = req.rtt_ms / 1000;
  in.deadline_s = req.deadline_s;
  in.s_percent = policy::SPercentSteps(req.step);
  return policy::Predict(in);
}

void FakeMigrationService::SetProfile(const std::string& image, policy::ImageProfile profile) {
  std::lock_guard<std::mutex> lock(mu_);
  scripted_profiles_[image] = std::move(profile);
}

void FakeMigrationService::SetVerifyReport(VerifyReport report) {
  std::lock_guard<std::mutex> lock(mu_);
  verify_report_ = std::move(report);
}

}  // namespace migratefs::control
