// One VM's migration on the source: its images, its connection to the target daemon,
// the sender threads and the control thread that walks the phases
// (DESIGN.md "The data path"):
//
//   connecting -> bulk (phase 1) -> dirty (phase 2) -> mirror (phase 3) -> finished
//                  \______________ paused (peer lost / target full) ___/
//
// Hybrid copy (CopyMode, migration_postcopy.cc) switches to mirroring as soon as at
// most (100 - precopy_pct) % of the data blocks are missing on the target, and its
// finish hands the VM's copy over instead of waiting for the last block:
//
//   ... -> mirror (completed) -> postcopy (target runs the VM, pulls the rest) -> finished
//
// Phase 1 is the first pass of the phase-2 loop over a bitmap that starts with every
// data block set (holes are skipped; a target that already holds a partial copy is
// compared block by block with hashes instead, so a restarted source never starts
// from scratch). Phase 2 ends when what is dirty is small enough to drain in a
// fraction of a second, or when it cannot converge (convergence.h); mirroring is
// switched on *before* that last drain. All images
// of the VM switch together and report completion together.
//
// A lost peer or a failing target never fails the VM's I/O (I4): unacknowledged blocks
// are re-marked dirty, mirroring falls back to marking, the migration shows "paused"
// with the reason and reconnects with exponential backoff (1 s doubling to 30 s),
// resuming from the bitmap. After `fail_after` of continuous pause it fails.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "migratefs/image_hook.h"
#include "migratefs/migration_service.h"
#include "net/latency_window.h"
#include "net/migration/delayed_completer.h"
#include "net/migration/event_bus.h"
#include "net/migration/image_migration.h"
#include "net/migration/mirror_backlog.h"
#include "net/migration/rate_meter.h"
#include "net/migration/token_bucket.h"
#include "net/migration/work_bell.h"
#include "net/peer/peer_client.h"

namespace migratefs::migration {

using Connector = std::function<Result<std::unique_ptr<net::PeerClient>>(const net::PeerClientOptions&)>;

// What every migration of one daemon shares. Outlives the migrations.
struct MigrationContext {
  HookRegistry* hooks = nullptr;
  int src_dirfd = -1;
  uint64_t block_size = 512 * 1024;
  std::string key;                 // pre-shared key proven to targets ("" = insecure peers)
  std::string instance_id;         // this daemon's, sent with every OpenImage (target_is_self)
  std::string listen;              // this daemon's own listen=HOST:PORT ("" = none)
  unsigned sender_threads = 8;     // -o senders=: blocks read and in flight at once (queue depth)
  std::chrono::milliseconds fail_after{std::chrono::minutes(10)};
  std::chrono::milliseconds max_backoff{std::chrono::seconds(30)};
  // Phase 2 stops iterating when the dirty set stops shrinking (see convergence.h).
  std::chrono::milliseconds converge_stall{std::chrono::seconds(3)};
  // In phase 3 the VM's writes wait for the peer. If mirrored writes are outstanding
  // and nothing has been acknowledged for this long, the peer counts as lost: the
  // writes are acknowledged locally, their blocks re-marked, the migration pauses (I4).
  std::chrono::milliseconds mirror_stall{std::chrono::seconds(3)};
  // The daemon's -o dscp= / so_priority=: the marking of every migration's peer
  // connection whose start does not say otherwise (net/socket_marking.h).
  net::SocketMarking marking;
  // The daemon's -o mirror_coalesce_us=: how long an asynchronous mirror's write may be
  // held for company on the peer connection (net::PeerClientOptions::coalesce_delay).
  std::chrono::microseconds mirror_coalesce{1000};
  // The daemon's -o mirror_batch_after=: a synchronous mirror's write queued behind at
  // least this many unanswered ones waits for their replies to share a send
  // (net::PeerClientOptions::awaited_batch_after); 0 = each is sent at once.
  uint32_t mirror_batch_after = 4;
  // The daemon's -o mirror_batch_wait_us=: how long such a write waits at most when no
  // reply comes first (net::PeerClientOptions::awaited_batch_wait).
  std::chrono::microseconds mirror_batch_wait{200};
  Connector connect;               // seam: tests inject faulty peers
  DelayedCompleter* completer = nullptr;
  EventBus* events = nullptr;
};

class Migration {
 public:
  // Opens and checks every image (names confined to SRC). Does not start anything.
  static Result<std::unique_ptr<Migration>> Create(std::string id, const StartRequest& req, MigrationContext* ctx);
  ~Migration();  // stops threads; detaches hooks (a fenced copy stays fenced until Release)

  // Gives every image its identity (net/image_identity.h), stamping one where there is
  // none. Call once the start is accepted, before Begin.
  Status StampIdentities();
  // Attaches the hooks and starts the control thread.
  void Begin();

  Status SetNetworkLimit(uint64_t kbps);
  Status SetDiskLimit(uint64_t kbps);
  // Phase 3's mirror, live (mirror_backlog.h): invalid_argument for a bad mode.
  Status SetMirrorMode(const MirrorMode& m);
  Progress GetProgress(RateKind what);
  bool Completed();
  Status Finish();
  Status Cancel(bool keep_partial);
  Result<VerifyReport> Verify();
  Status Release();
  MigrationInfo Info();
  const std::vector<std::unique_ptr<ImageMigration>>& images() const { return images_; }
  const std::string& id() const { return id_; }
  // The DSCP / socket priority its peer connections carry: the start's, field by field
  // over the daemon's default. Fixed for the migration's life.
  const net::SocketMarking& marking() const { return marking_; }
  bool terminal() const;  // finished, cancelled or failed
  // Whether its images are taken: running, or finished and not yet released.
  bool HoldsImages() const;

  // For ImageMigration.
  std::shared_ptr<net::PeerClient> peer();
  void OnPeerError(const Status& error);
  TokenBucket& disk_bucket() { return disk_bucket_; }
  MirrorBacklog& backlog() { return backlog_; }
  RateMeter& disk_meter() { return disk_meter_; }
  RateMeter& net_meter() { return net_meter_; }
  RateMeter& dirty_meter() { return dirty_meter_; }
  // Rung by whoever gives the senders work (work_bell.h).
  WorkBell& work_bell() { return work_bell_; }
  DelayedCompleter& completer() { return *ctx_->completer; }
  void NoteSent(uint64_t bytes);      // block data (phases 1-2)
  void NoteMirrored(uint64_t bytes);  // forwarded VM writes (phase 3)
  // Mirrored writes sent / acknowledged (either way), for the phase-3 stall watchdog.
  void MirrorSent() { mirror_outstanding_.fetch_add(1); }
  void MirrorAcked() {
    mirror_outstanding_.fetch_sub(1);
    NoteAck();
  }
  void NoteAck() { last_ack_ns_.store(std::chrono::steady_clock::now().time_since_epoch().count()); }
  bool hybrid() const { return copy_.hybrid; }
  bool postcopy() const { return postcopy_.load(); }
  // A new worker takes over a migration that was in postcopy (the journal said so):
  // the source stays fenced, and what to send comes from the target's map when the
  // connection reattaches. Call before Begin.
  void ResumePostcopy();
  void MarkPostcopy(bool on);  // sets or clears kPostcopyXattr on every source copy
  // The journal document a hand-over writes on each source copy (kPostcopyXattr) so
  // that a daemon restarted from nothing resumes the push. Call before Begin.
  void set_postcopy_record(std::string doc) { postcopy_record_ = std::move(doc); }
  // Hybrid copy: the last write profile of each image (Engine's profile op; an image
  // without one gets none), from which the first connection picks the blocks phases
  // 1-2 leave for post-copy. Call before Begin.
  void set_write_profiles(std::vector<policy::ImageProfile> profiles) { write_profiles_ = std::move(profiles); }

 private:
  Migration(std::string id, const StartRequest& req, MigrationContext* ctx);
  void Run();
  void RunGuarded();
  bool ConnectAndOpen(bool first);
  // A connection of its own to the target (cancel and verify after the migration's
  // connection is gone), carrying the migration's marking.
  Result<std::unique_ptr<net::PeerClient>> ConnectAside();
  // "" if the target has room for the image, else the target_full reason to pause with.
  std::string RoomOnTarget(const ImageMigration& img, const net::PeerClient::OpenedImage& opened) const;
  void InitialCompare(ImageMigration& img, net::PeerClient& peer, bool target_has_copy);
  void RunConnected();
  void StartSenders();
  void StopSenders();
  void SenderLoop();
  bool ClaimNext(ImageMigration** img, uint64_t* block);
  enum class SendOutcome { kSent, kNone, kStop };  // kNone: nothing sent, go on
  SendOutcome SendWhenRoom(net::PeerClient& peer, ImageMigration& img, uint64_t block, net::SendPace pace);
  bool SendBlock(net::PeerClient& peer, ImageMigration& img, uint64_t block, net::SendPace pace);
  void SendSlices(net::PeerClient& peer, ImageMigration& img, uint64_t block, net::PayloadBuffer owned, uint64_t n,
                  uint64_t slice, const std::function<void(const Status&)>& ack,
                  const std::function<void(uint64_t, const Status&)>& frame_acked);
  void PayNetwork(uint64_t bytes);
  void EnterMirror();
  bool LinkLive() const;
  void AnnounceMirrorSwitch();  // a mirror_mode event when the backlog crossed a mark
  void Pause(const std::string& reason);
  void DropPeer();
  void DetachHooks();
  static std::shared_ptr<ImageHook> HookOf(ImageMigration* img);
  net::ImageOrigin OriginOf(const ImageMigration& img) const;
  void SetPhase(const char* phase, const char* event_type, const std::string& detail = "");
  bool SleepInterruptible(std::chrono::milliseconds d);
  uint64_t DirtyBlocks() const;
  bool DrainedLocked();
  bool AnnounceIfCompleted();  // true if completed; publishes the event once

  // Hybrid copy's pre-copy set (migration_precopy_set.cc; seed 002): phases 1-2 send
  // only the round(precopy_pct % of the data blocks) coldest blocks, as the predictor
  // assumes (policy::PostcopyBlocks), and leave the rest for phase 3 and post-copy.
  // Called once the first connection compared every image.
  void DeferHottest();
  // Phase 3 from here: the scan takes every missing block again.
  void ReleaseDeferred();
  bool Deferred(ImageMigration& img, uint64_t block) const;  // the scan passes it by
  uint64_t DeferredBlocks() const;
  // What phases 1-2 still have to send: dirty blocks outside the deferred set (the
  // convergence rule judges these).
  uint64_t PrecopyDirtyBlocks() const;

  // Hybrid copy and postcopy (migration_postcopy.cc).
  uint64_t MissingBlocks() const;  // dirty or in flight: not (yet) on the target
  // A block sent (+1) or acknowledged either way (-1), for MissingBlocks: a block the
  // VM wrote again while it was in flight is missing once, not twice.
  void NoteInflight(ImageMigration* img, uint64_t block, int delta);
  // Hybrid: few enough blocks are missing for the hand-over (precopy_pct).
  bool HybridReady() const;
  // Counts the data blocks of the images (SEEK_DATA), the base of precopy_pct.
  void CountDataBlocks();
  // Finish in hybrid mode: fence, ship the map of missing blocks, hand over.
  Status HandOver(std::shared_ptr<net::PeerClient> peer, const std::function<Status(const Error&)>& unfence);
  // Postcopy's end: every block acknowledged; the target finishes its copies.
  void FinishPostcopy(net::PeerClient& peer);
  // A Fetch frame (the peer's I/O thread): its blocks go first; without a waiting
  // reader (the target's map on a reattach) they are only marked to be sent.
  void OnFetch(uint32_t handle, uint64_t first, uint64_t count, bool waiting);
  // The next block a target's reader waits for, if any (SenderLoop).
  bool ClaimFetched(ImageMigration** img, uint64_t* block);
  // A block of postcopy was acknowledged: on demand or background, and how long the
  // target's reader waited for it (from its fetch request's arrival here).
  void NotePostcopyAck(ImageMigration* img, uint64_t block, uint64_t bytes);
  void FillPostcopyProgress(Progress& p);
  // Applies the target's map frames that came before the open's ack (OnFetch).
  void TakeEarlyMap(ImageMigration& img);
  const std::string id_;
  const std::vector<std::string> names_;
  const std::string target_;
  const bool overwrite_;
  const bool force_;
  const net::SocketMarking marking_;
  const CopyMode copy_;
  MigrationContext* ctx_;
  std::vector<std::unique_ptr<ImageMigration>> images_;

  mutable std::mutex mu_;        // phase, reasons, peer_, flags below
  std::condition_variable cv_;   // wakes the control thread and sleepers
  WorkBell work_bell_;           // wakes idle senders (SenderLoop)
  std::string phase_;
  std::string reason_;
  bool stop_ = false;            // cancel / destruction
  bool finishing_ = false;
  bool ever_connected_ = false;
  bool completed_event_sent_ = false;
  bool released_ = false;
  std::chrono::steady_clock::time_point paused_since_{};
  std::shared_ptr<net::PeerClient> peer_;
  std::string peer_error_;       // set by acks that failed; read by the control thread

  std::mutex finish_mu_;         // one Finish/Cancel/Verify/Release at a time

  std::atomic<bool> senders_run_{false};
  std::vector<std::thread> senders_;
  std::mutex scan_mu_;
  size_t scan_image_ = 0;
  uint64_t scan_block_ = 0;
  std::atomic<uint64_t> passes_{0};
  std::atomic<int64_t> data_inflight_{0};   // blocks sent, not yet acknowledged
  mutable std::mutex inflight_mu_;
  std::map<std::pair<ImageMigration*, uint64_t>, int> inflight_blocks_;  // the same, by block
  std::atomic<uint64_t> inflight_bytes_{0};  // their payload bytes
  std::atomic<int64_t> mirror_outstanding_{0};
  MirrorBacklog backlog_;
  std::atomic<int64_t> last_ack_ns_{0};       // steady_clock of the last ack of any frame
  std::atomic<uint64_t> bytes_sent_{0};
  std::atomic<uint64_t> bytes_mirrored_{0};
  WorkBell limit_bell_;  // rung when the network limit changes (PayNetwork)

  // Hybrid copy and postcopy.
  uint64_t data_blocks_ = 0;               // the base of precopy_pct (CountDataBlocks)
  std::vector<policy::ImageProfile> write_profiles_;  // set_write_profiles
  std::atomic<bool> deferring_{false};     // phases 1-2 pass the deferred blocks by
  std::atomic<bool> postcopy_{false};      // handed over: the target runs the VM
  std::string postcopy_record_;            // set_postcopy_record
  std::atomic<bool> handing_over_{false};  // senders idle while the map is built
  std::mutex fetch_mu_;
  std::deque<std::pair<ImageMigration*, uint64_t>> fetch_queue_;
  std::map<std::pair<ImageMigration*, uint64_t>, std::chrono::steady_clock::time_point> fetch_asked_;
  net::LatencyWindow fetch_latency_;
  std::set<ImageMigration*> postcopy_done_;  // finished on the target (control thread)
  std::chrono::steady_clock::time_point next_finish_try_{};  // control thread
  struct EarlyRun {
    uint32_t handle;
    uint64_t first, count;
  };
  std::vector<EarlyRun> early_map_;  // under fetch_mu_; of the connection being opened
  uint64_t bytes_pulled_ = 0, bytes_fetched_ = 0;  // under fetch_mu_

  TokenBucket net_bucket_;
  TokenBucket disk_bucket_;
  RateMeter net_meter_;
  RateMeter disk_meter_;
  RateMeter dirty_meter_;
  std::thread control_;
};

}  // namespace migratefs::migration
