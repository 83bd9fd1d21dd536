// The daemon's MigrationService: owns every migration whose source is this host and
// answers the control socket's requests about them.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>
#include <optional>
#include <set>
#include <string>

#include "migratefs/migration_service.h"
#include "net/migration/migration.h"
#include "net/migration/migration_journal.h"

namespace migratefs::migration {

// Limits (KB/s) above this are refused: 100 GB/s, anything above is a typo.
inline constexpr uint64_t kMaxKbps = 100'000'000;


// Ended migrations (cancelled, failed, finished and released) give back every
// descriptor and thread at once (cancel and release) or kFailedGrace after a failure
// (until then a cancel can still remove the target's partial copy; its threads have
// ended, it holds only its image descriptors); what `list` and `status` show of them
// is kept for the last kKeepEnded of them, at most kKeepEndedFor. `status` of an older
// one says it was forgotten.
class Engine : public MigrationService {
 public:
  static constexpr size_t kKeepEnded = 100;
  static constexpr std::chrono::hours kKeepEndedFor{1};
  static constexpr std::chrono::seconds kJanitorPeriod{1};
  static constexpr std::chrono::minutes kFailedGrace{10};

  // ctx.completer and ctx.events are created and owned by the engine if null.
  explicit Engine(MigrationContext ctx);
  ~Engine() override;

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
  std::vector<IncomingInfo> Incoming() override { return incoming_ ? incoming_() : std::vector<IncomingInfo>{}; }
  // Where Incoming() looks (the daemon's receive guard). Set before requests come.
  void SetIncoming(std::function<std::vector<IncomingInfo>()> fn) { incoming_ = std::move(fn); }
  Result<MigrationInfo> GetStatus(const std::string& id) override;
  std::unique_ptr<Subscription> Subscribe(EventSink sink) override;
  // profile / predict (issue 10 item 6; write_profiler.h). Profile blocks for
  // req.seconds (cut short by StopProfiles: then shutting down, an error); the last
  // profile of each image (by name) is kept for Predict, at most kKeepProfiles of them.
  Result<std::vector<policy::ImageProfile>> Profile(const ProfileRequest& req) override;
  Result<policy::Prediction> Predict(const PredictRequest& req) override;
  static constexpr size_t kKeepProfiles = 256;
  // Ends every running profile at once (with an error) and refuses new ones: at daemon
  // shutdown, before the control server waits for its requests.
  void StopProfiles();

  // Pauses nothing, stops everything: used at daemon shutdown.
  void StopAll();

  // At daemon start: fences again every source copy that a finish before the restart
  // left fenced and no release lifted (restored_fence.h). Each is listed as a finished
  // migration "r1", "r2", ... of its one image, answering status and release only.
  // Returns how many were found.
  size_t RestoreFences();
  // The migrations that were in postcopy when the daemon stopped, from the marks on
  // their source copies (restored_fence.h): for Resume, after RestoreFences, when
  // the memfd journal is gone (a full restart) or lacks them.
  JournalDoc MarkedPostcopies() const;

  // The restart journal (migration_journal.h): `save` gets the document, under the
  // engine's lock, whenever what is running changes (a start — before its reply —,
  // cancel, finish, limits, mirror mode, a migration ending). `instance_id` is the
  // daemon's (ctx.instance_id).
  void SetJournal(std::function<void(const std::string&)> save);
  // After a worker restart: starts again, under its id, every migration `doc` lists
  // (on a thread of its own: see engine.cc). One that cannot start again is listed as
  // failed with the reason, never silently dropped.
  void Resume(JournalDoc doc);

 private:
  // `postcopy`: a new worker takes over a migration handed over before (the journal);
  // the fences restored for its images at start-up become its own.
  Result<std::string> StartLocked(const std::string& id, const StartRequest& req, bool postcopy = false);
  void SaveJournalLocked();
  // Applies `change` (may be null) to the journalled request of `id`, then saves.
  void Journal(const std::string& id, const std::function<void(StartRequest&)>& change);
  void ResumeAll(const JournalDoc& doc);
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
    std::shared_ptr<ImageHook> hook;  // the EROFS hook this fence attached
  };
  // nullopt when `id` is not a restored fence.
  std::optional<Status> ReleaseRestored(const std::string& id);
  static MigrationInfo InfoOf(const std::string& id, const RestoredFence& f);

  // Moves ended migrations from migrations_ to ended_ (their Info), trims ended_;
  // returns them so the caller destroys them outside mu_.
  std::vector<std::shared_ptr<Migration>> RetireEndedLocked();
  void RetireEnded();
  void JanitorLoop();
  bool EndedIn(const std::string& id, const char* phase);
  std::optional<MigrationInfo> EndedInfo(const std::string& id);
  std::string ForgottenOrUnknown(const std::string& id) const;

  struct Ended {
    MigrationInfo info;
    std::chrono::steady_clock::time_point at;
  };

  MigrationContext ctx_;
  std::unique_ptr<DelayedCompleter> own_completer_;
  std::unique_ptr<EventBus> own_events_;
  std::mutex mu_;
  uint64_t next_id_ = 1;
  std::map<std::string, std::shared_ptr<Migration>> migrations_;
  std::map<std::string, StartRequest> requests_;  // of migrations_, as they are now (journal)
  std::map<std::string, uint32_t> resumed_;       // times each id was started again
  std::function<void(const std::string&)> journal_save_;  // guarded by mu_
  std::string journal_last_;                               // what it got last
  std::thread resumer_;
  std::function<std::vector<IncomingInfo>()> incoming_;  // set once, before requests
  std::map<std::string, RestoredFence> restored_;  // guarded by mu_
  std::map<std::string, Ended> ended_;             // guarded by mu_
  std::deque<std::string> ended_order_;            // ids of ended_, oldest first
  std::map<std::string, std::chrono::steady_clock::time_point> failed_since_;  // guarded by mu_
  bool janitor_stop_ = false;                      // guarded by mu_
  std::condition_variable janitor_cv_;
  // profile / predict
  std::mutex profile_mu_;
  std::condition_variable profile_cv_;
  bool profile_stop_ = false;                                    // guarded by profile_mu_
  std::map<std::string, policy::ImageProfile> profiles_;         // guarded by mu_
  std::deque<std::string> profile_order_;                        // names of profiles_, oldest first
  std::thread janitor_;  // last: starts after everything above exists
};

}  // namespace migratefs::migration
