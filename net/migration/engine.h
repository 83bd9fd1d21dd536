// The daemon's MigrationService: owns every migration whose source is this host and
// answers the control socket's requests about them.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "migratefs/migration_service.h"
#include "net/migration/migration.h"

namespace migratefs::migration {

class Engine : public MigrationService {
 public:
  // ctx.completer and ctx.events are created and owned by the engine if null.
  explicit Engine(MigrationContext ctx);
  ~Engine() override;

  Result<std::string> Start(const StartRequest& req) override;
  Status SetNetworkLimit(const std::string& id, uint64_t kbps) override;
  Status SetDiskLimit(const std::string& id, uint64_t kbps) override;
  Result<Progress> QueryProgress(const std::string& id, RateKind what) override;
  Result<bool> QueryCompletion(const std::string& id) override;
  Status Finish(const std::string& id) override;
  Status Cancel(const std::string& id, bool keep_partial) override;
  Result<VerifyReport> Verify(const std::string& id) override;
  Status Release(const std::string& id) override;
  std::vector<MigrationInfo> List() override;
  Result<MigrationInfo> GetStatus(const std::string& id) override;
  std::unique_ptr<Subscription> Subscribe(EventSink sink) override;

  // Pauses nothing, stops everything: used at daemon shutdown.
  void StopAll();

  // At daemon start: fences again every source copy that a finish before the restart
  // left fenced and no release lifted (restored_fence.h). Each is listed as a finished
  // migration "r1", "r2", ... of its one image, answering status and release only.
  // Returns how many were found.
  size_t RestoreFences();

 private:
  Result<std::shared_ptr<Migration>> Find(const std::string& id);
  // Runs fn on migration `id`, or answers unknown_id.
  template <typename R, typename Fn>
  R With(const std::string& id, Fn fn) {
    auto m = Find(id);
    if (!m.ok()) return m.error();
    return fn(*m.value());
  }

  struct RestoredFence {
    std::string image;
    std::string target;
    dev_t dev = 0;
    ino_t ino = 0;
    int fd = -1;  // kept open from the scan, so release reaches this very file
  };
  // nullopt when `id` is not a restored fence.
  std::optional<Status> ReleaseRestored(const std::string& id);
  static MigrationInfo InfoOf(const std::string& id, const RestoredFence& f);

  MigrationContext ctx_;
  std::unique_ptr<DelayedCompleter> own_completer_;
  std::unique_ptr<EventBus> own_events_;
  std::mutex mu_;
  uint64_t next_id_ = 1;
  std::map<std::string, std::shared_ptr<Migration>> migrations_;
  std::map<std::string, RestoredFence> restored_;  // guarded by mu_
};

}  // namespace migratefs::migration
