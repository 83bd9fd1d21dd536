#include "net/migration/engine.h"

#include <utility>

namespace migratefs::migration {

namespace {
constexpr uint64_t kMaxKbps = 100'000'000;  // 100 GB/s: anything above is a typo
}

Engine::Engine(MigrationContext ctx) : ctx_(std::move(ctx)) {
  if (!ctx_.completer) {
    own_completer_ = std::make_unique<DelayedCompleter>();
    ctx_.completer = own_completer_.get();
  }
  if (!ctx_.events) {
    own_events_ = std::make_unique<EventBus>();
    ctx_.events = own_events_.get();
  }
}

Engine::~Engine() { StopAll(); }

void Engine::StopAll() {
  std::map<std::string, std::shared_ptr<Migration>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.swap(migrations_);
  }
  all.clear();  // each destructor stops its threads and detaches its hooks
}

Result<std::string> Engine::Start(const StartRequest& req) {
  if (req.target.empty()) return MakeError(errc::kBadRequest, "start: \"target\" is required (HOST:PORT)");
  if (req.network_kbps > kMaxKbps || req.disk_kbps > kMaxKbps)
    return MakeError(errc::kInvalidArgument, "start: limits above 100000000 KB/s are refused");
  std::lock_guard<std::mutex> lock(mu_);
  std::string id = "m" + std::to_string(next_id_);
  auto created = Migration::Create(id, req, &ctx_);
  if (!created.ok()) return created.error();
  std::shared_ptr<Migration> m = std::move(created.value());
  // One migration per image at a time; a finished (fenced, unreleased) one still counts.
  for (auto& [other_id, other] : migrations_) {
    if (!other->HoldsImages()) continue;
    for (auto& mine : m->images())
      for (auto& theirs : other->images())
        if (mine->dev() == theirs->dev() && mine->ino() == theirs->ino())
          return MakeError(errc::kBusy, "image \"" + mine->name() + "\" is already in migration " + other_id);
  }
  next_id_++;
  m->Begin();
  migrations_[id] = m;
  return id;
}

Result<std::shared_ptr<Migration>> Engine::Find(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = migrations_.find(id);
  if (it == migrations_.end()) return MakeError(errc::kUnknownId, "no migration with id \"" + id + "\"");
  return it->second;
}

Status Engine::SetNetworkLimit(const std::string& id, uint64_t kbps) {
  if (kbps > kMaxKbps) return MakeError(errc::kInvalidArgument, "kbps above 100000000 is refused");
  return With<Status>(id, [&](Migration& m) { return m.SetNetworkLimit(kbps); });
}

Status Engine::SetDiskLimit(const std::string& id, uint64_t kbps) {
  if (kbps > kMaxKbps) return MakeError(errc::kInvalidArgument, "kbps above 100000000 is refused");
  return With<Status>(id, [&](Migration& m) { return m.SetDiskLimit(kbps); });
}

Result<Progress> Engine::QueryProgress(const std::string& id, RateKind what) {
  return With<Result<Progress>>(id, [&](Migration& m) { return m.GetProgress(what); });
}

Result<bool> Engine::QueryCompletion(const std::string& id) {
  return With<Result<bool>>(id, [&](Migration& m) { return m.Completed(); });
}

Status Engine::Finish(const std::string& id) {
  return With<Status>(id, [&](Migration& m) { return m.Finish(); });
}

Status Engine::Cancel(const std::string& id, bool keep_partial) {
  return With<Status>(id, [&](Migration& m) { return m.Cancel(keep_partial); });
}

Result<VerifyReport> Engine::Verify(const std::string& id) {
  return With<Result<VerifyReport>>(id, [&](Migration& m) { return m.Verify(); });
}

Status Engine::Release(const std::string& id) {
  return With<Status>(id, [&](Migration& m) { return m.Release(); });
}

std::vector<MigrationInfo> Engine::List() {
  std::vector<std::shared_ptr<Migration>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, m] : migrations_) all.push_back(m);
  }
  std::vector<MigrationInfo> out;
  for (auto& m : all) out.push_back(m->Info());
  return out;
}

Result<MigrationInfo> Engine::GetStatus(const std::string& id) {
  return With<Result<MigrationInfo>>(id, [&](Migration& m) { return m.Info(); });
}

std::unique_ptr<MigrationService::Subscription> Engine::Subscribe(EventSink sink) {
  return ctx_.events->Subscribe(std::move(sink));
}

}  // namespace migratefs::migration
