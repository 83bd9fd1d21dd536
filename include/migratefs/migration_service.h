// What the control socket can ask of the daemon (DESIGN.md "Control socket"; seed 004
// Table I). The control server (net/control_*) parses and validates JSON lines and calls
// this interface; the migration engine implements it. Tests use a fake.
//
// Every call is thread-safe, returns quickly (never waits for the network), and on
// error changes nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker/policy/hybrid_predictor.h"
#include "migratefs/status.h"

namespace migratefs {

// Phases, as the strings the API reports.
namespace phase {
inline constexpr const char* kConnecting = "connecting";
inline constexpr const char* kBulk = "bulk";        // phase 1
inline constexpr const char* kDirty = "dirty";      // phase 2
inline constexpr const char* kMirror = "mirror";    // phase 3 (completed = true)
inline constexpr const char* kPaused = "paused";    // peer lost / target disk full; retrying
inline constexpr const char* kPostcopy = "postcopy";  // hybrid: finish done, the target runs the VM and
                                                     // fetches what it still lacks from the source
inline constexpr const char* kFinished = "finished";  // finish done; source fenced
inline constexpr const char* kCancelled = "cancelled";
inline constexpr const char* kFailed = "failed";
}  // namespace phase

// Phase 3's mirror (issue 12; net/migration/mirror_backlog.h). Synchronous: the VM's
// write is acknowledged once the target applied it. Asynchronous: once it is on the
// source disk and queued for the peer, while the queue stays under the high mark;
// above it writes wait for the peer until the queue is below the low mark.
struct MirrorMode {
  bool async = false;
  uint64_t backlog_max_bytes = 64ull << 20;
  unsigned backlog_low_pct = 5;    // back to asynchronous below this share of max
  unsigned backlog_high_pct = 70;  // synchronous from this share of max
};

// How the image reaches the target (issue 10; seed 002's fractional hybrid copy).
// Pre-copy: the hypervisor may switch over once every block is on the target.
// Hybrid: once at most (100 - precopy_pct) % of the image's data blocks are missing
// there and writes are mirrored; finish then hands the VM's copy to the target, which
// serves the missing blocks on demand while the source pushes the rest (postcopy).
struct CopyMode {
  bool hybrid = false;
  unsigned precopy_pct = 100;  // 0..100, hybrid only
  // Target side: how long reads of blocks still on the source wait for a lost source
  // before they fail with EIO and the copy counts as failed.
  uint64_t postcopy_timeout_s = 600;
};

struct StartRequest {
  std::vector<std::string> images;  // relative to SRC; one VM's disks
  std::string target;               // HOST:PORT of the peer daemon's listen=
  uint64_t network_kbps = 0;        // optional initial limits (0 = none)
  uint64_t disk_kbps = 0;
  // A file of the same name on the target that is not a copy of this image (another
  // identity, net/image_identity.h) is refused with target_exists unless this is set;
  // even then never one open for writing there (target_busy) or with other hard links.
  bool overwrite = false;
  // Skip the check that the target has room for the image's allocated bytes (it pauses
  // with target_full otherwise, and proceeds once there is room).
  bool force = false;
  // Priority marking of this migration's peer connection (net/socket_marking.h);
  // unset = the daemon's -o dscp= / so_priority= (which may be unset too: unmarked).
  std::optional<uint8_t> dscp = std::nullopt;          // 0..63
  std::optional<uint32_t> so_priority = std::nullopt;  // SO_PRIORITY
  MirrorMode mirror;
  CopyMode copy;
};

enum class RateKind { kNetwork, kDisk };

struct Progress {
  std::string phase;
  std::string pause_reason;     // set while phase == paused or failed
  double kbps = 0;              // current rate of the asked kind, KB/s; everywhere in the API 1 KB = 1000 bytes
  uint64_t bytes_total = 0;     // sum of image sizes
  uint64_t bytes_sent = 0;      // block data put on the wire by phases 1-2 (incl. resends)
  uint64_t bytes_mirrored = 0;  // the VM's writes forwarded in phase 3
  uint64_t bytes_left = 0;      // dirty blocks * block size, clipped to image sizes
  uint64_t blocks_left = 0;
  uint64_t dirty_blocks = 0;
  double dirty_kbps = 0;        // rate at which the VM dirties clean blocks
  double network_kbps = 0;      // both rates, always filled
  double disk_kbps = 0;         // the VM's write rate to the images
  double eta_s = -1;            // Expression 1 of seed 004; -1 = cannot converge at current rates
  uint64_t network_limit_kbps = 0;
  uint64_t disk_limit_kbps = 0;
  // The marking the migration's peer connection carries (start's, else the daemon's);
  // unset = not marked.
  std::optional<uint8_t> dscp = std::nullopt;
  std::optional<uint32_t> so_priority = std::nullopt;
  // Phase 3's mirror: "sync", "async", or "async-throttled" (over the high mark:
  // writes wait for the peer until the backlog is below the low mark).
  std::string mirror_mode = "sync";
  uint64_t backlog_bytes = 0;      // mirrored bytes queued or in flight, not yet acknowledged
  uint64_t backlog_max_bytes = 0;  // 0 in sync mode
  double mirror_sync_s = 0;        // time async writes spent waiting (over the high mark)
  // Times a new worker took this migration over after the old one died or was
  // upgraded (fs/supervisor.h); it then went on from the target's copy, not from zero.
  uint32_t resumed = 0;
  // Hybrid copy (CopyMode). "precopy" or "hybrid"; the rest is filled in hybrid mode.
  std::string mode = "precopy";
  unsigned precopy_pct = 100;
  uint64_t data_blocks = 0;       // blocks of the images that held data at the start
  uint64_t blocks_remote = 0;     // blocks the target still lacks (dirty or in flight)
  uint64_t bytes_pulled = 0;      // postcopy: blocks pushed in the background
  uint64_t bytes_fetched_on_demand = 0;  // postcopy: blocks the target's reads asked for
  // Postcopy: from a fetch request's arrival at the source to the target's ack of the
  // block, over the last 10 s (ms; 0 when there were none).
  double fetch_latency_p50_ms = 0;
  double fetch_latency_p99_ms = 0;
};

struct MigrationInfo {
  std::string id;
  std::vector<std::string> images;
  std::string target;
  Progress progress;
  bool completed = false;
};

// A copy this daemon receives (the target's side of a migration), for the "incoming"
// request: while it is being received, and in hybrid mode while it is in postcopy.
struct IncomingInfo {
  std::string image;             // relative to SRC
  std::string state;             // "receiving", "postcopy", "failed"
  std::string reason;            // why it failed
  uint64_t blocks_total = 0;     // postcopy: blocks of the image
  uint64_t blocks_remote = 0;    // postcopy: blocks still only on the source
  uint64_t bytes_pulled = 0;     // postcopy: blocks that arrived in the background
  uint64_t bytes_fetched_on_demand = 0;  // postcopy: blocks that local reads or writes waited for
  uint64_t fetches = 0;          // postcopy: on-demand fetches (reads/writes that waited)
  double fetch_latency_p50_ms = 0;  // postcopy: how long they waited, over the last 10 s
  double fetch_latency_p99_ms = 0;
};

struct VerifyReport {
  bool identical = false;
  uint64_t blocks_compared = 0;
  // Mismatching byte ranges [offset, offset+length) per image.
  struct Range { std::string image; uint64_t offset; uint64_t length; };
  std::vector<Range> mismatches;
};

// `profile` (issue 10, seed 002): count the VM's writes per block of each image for a
// while, on the source, before a migration starts.
inline constexpr uint64_t kMaxProfileSeconds = 3600;
struct ProfileRequest {
  std::vector<std::string> images;  // relative to SRC, distinct
  uint64_t seconds = 0;             // 1..kMaxProfileSeconds
};

// `predict`: seed 002's prediction (broker/policy/hybrid_predictor.h) from the last
// profile of each image taken on this daemon.
struct PredictRequest {
  std::vector<std::string> images;  // in start order
  uint64_t net_kbps = 0;            // the link rate for the migration, > 0 (1 KB = 1000 bytes)
  double deadline_s = 0;            // seconds from the start; 0 = none
  double rtt_ms = 5;
  double step = 5;                  // rows for S = 0, step, ..., 100; in (0, 100]
};

// Streamed to `events` subscribers, in order, as JSON lines.
struct Event {
  std::string id;       // migration id
  std::string type;     // "phase", "paused", "resumed", "failed", "completed", "finished", "cancelled"
  std::string phase;    // phase after the event
  std::string detail;   // reason / message
  double time = 0;      // seconds since the epoch
};

class MigrationService {
 public:
  virtual ~MigrationService() = default;

  virtual Result<std::string> Start(const StartRequest& req) = 0;  // -> id "m1", "m2", ...
  virtual Status SetNetworkLimit(const std::string& id, uint64_t kbps) = 0;  // 0 = none
  virtual Status SetDiskLimit(const std::string& id, uint64_t kbps) = 0;     // 0 = none
  // Phase 3's mirror, live: takes effect for the next write.
  virtual Status SetMirrorMode(const std::string& id, const MirrorMode& mode) = 0;
  virtual Result<Progress> QueryProgress(const std::string& id, RateKind what) = 0;
  virtual Result<bool> QueryCompletion(const std::string& id) = 0;
  // Flush, fsync the target, stop mirroring, fence the source. Waits for the peer, so
  // the control server calls it off its I/O thread. Idempotent.
  virtual Status Finish(const std::string& id) = 0;
  // Stops the migration; the source is untouched. keep_partial: leave the target's copy
  // (marked incomplete) instead of removing it.
  virtual Status Cancel(const std::string& id, bool keep_partial) = 0;
  virtual Result<VerifyReport> Verify(const std::string& id) = 0;  // may take long
  // Lifts the fence of a finished migration's source copies.
  virtual Status Release(const std::string& id) = 0;
  virtual std::vector<MigrationInfo> List() = 0;
  virtual Result<MigrationInfo> GetStatus(const std::string& id) = 0;
  // The copies this daemon receives now (target side).
  virtual std::vector<IncomingInfo> Incoming() { return {}; }

  // Counts the writes to each block (the daemon's block size) of `images` for
  // `seconds`, while the VM runs, and returns one profile per image in the format of
  // `migratefs-scheduler predict --profile` (policy::ImageProfile; which blocks hold
  // data, mean bytes per write). Blocks for `seconds`: the control server runs it off
  // its I/O thread. Refused for an image that is migrating, fenced or being received.
  // The service keeps the last profile of each image for Predict.
  virtual Result<std::vector<policy::ImageProfile>> Profile(const ProfileRequest& req) {
    return MakeError(errc::kUnknownOp, "profile is not supported by this daemon");
  }
  // The prediction for `req.images` from their last profiles (wrong_state when an image
  // has none). May take a second on a large profile: run off the I/O thread.
  virtual Result<policy::Prediction> Predict(const PredictRequest& req) {
    return MakeError(errc::kUnknownOp, "predict is not supported by this daemon");
  }

  // Calls `sink` for every later event, in order, from one thread at a time, until the
  // returned handle is destroyed.
  using EventSink = std::function<void(const Event&)>;
  class Subscription {
   public:
    virtual ~Subscription() = default;
  };
  virtual std::unique_ptr<Subscription> Subscribe(EventSink sink) = 0;
};

}  // namespace migratefs
