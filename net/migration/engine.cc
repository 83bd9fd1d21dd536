#include "net/migration/engine.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "net/migration/refuse_writes_hook.h"
#include "net/migration/restored_fence.h"
#include "net/migration/src_scan.h"

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

Engine::~Engine() {
  StopAll();
  for (auto& [id, f] : restored_) ::close(f.fd);  // the fences themselves stay marked on disk
}

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
  for (auto& [other_id, fence] : restored_)
    for (auto& mine : m->images())
      if (mine->dev() == fence.dev && mine->ino() == fence.ino)
        return MakeError(errc::kBusy, "image \"" + mine->name() + "\" is fenced by a finish before a restart; release " +
                                          other_id + " first");
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
  if (restored_.count(id)) {
    return MakeError(errc::kWrongState, id + " is a fence restored after a daemon restart: only status and release apply");
  }
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
  if (std::optional<Status> restored = ReleaseRestored(id)) return *restored;
  return With<Status>(id, [&](Migration& m) { return m.Release(); });
}

size_t Engine::RestoreFences() {
  if (ctx_.src_dirfd < 0 || !ctx_.hooks) return 0;
  std::lock_guard<std::mutex> lock(mu_);
  return ForEachMarkedFile(ctx_.src_dirfd, kFenceXattr,
                           [&](const std::string& name, const std::string& target, dev_t dev, ino_t ino, int fd) {
                             ctx_.hooks->Attach(dev, ino, std::make_shared<RefuseWritesHook>(EROFS));
                             const std::string id = "r" + std::to_string(restored_.size() + 1);
                             restored_[id] = RestoredFence{name, target, dev, ino, ::fcntl(fd, F_DUPFD_CLOEXEC, 0)};
                             spdlog::warn("\"{}\" stays fenced (writes get EROFS): finished towards {} before this "
                                          "restart and never released; release {} lifts it",
                                          name, target, id);
                           });
}

std::optional<Status> Engine::ReleaseRestored(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = restored_.find(id);
  if (it == restored_.end()) return std::nullopt;
  const RestoredFence& f = it->second;
  // The mark goes first: if that fails the copy stays fenced, and says so.
  const int err = f.fd < 0 ? EBADF : ClearFence(f.fd);
  if (err != 0) return MakeError(errc::kIo, "release " + id + ": \"" + f.image + "\": " + std::strerror(err));
  ctx_.hooks->Detach(f.dev, f.ino);
  ::close(f.fd);
  if (ctx_.events) ctx_.events->Publish(Event{id, "released", phase::kFinished, "source copy writable again", NowSeconds()});
  restored_.erase(it);
  return OkStatus();
}

MigrationInfo Engine::InfoOf(const std::string& id, const RestoredFence& f) {
  MigrationInfo info;
  info.id = id;
  info.images = {f.image};
  info.target = f.target;
  info.progress.phase = phase::kFinished;
  info.completed = true;
  return info;
}

std::vector<MigrationInfo> Engine::List() {
  std::vector<std::shared_ptr<Migration>> all;
  std::vector<MigrationInfo> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, m] : migrations_) all.push_back(m);
    for (auto& [id, f] : restored_) out.push_back(InfoOf(id, f));
  }
  for (auto& m : all) out.push_back(m->Info());
  return out;
}

Result<MigrationInfo> Engine::GetStatus(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = restored_.find(id); it != restored_.end()) return InfoOf(id, it->second);
  }
  return With<Result<MigrationInfo>>(id, [&](Migration& m) { return m.Info(); });
}

std::unique_ptr<MigrationService::Subscription> Engine::Subscribe(EventSink sink) {
  return ctx_.events->Subscribe(std::move(sink));
}

}  // namespace migratefs::migration
