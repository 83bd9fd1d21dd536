#include "net/migration/migration.h"

#include "net/migration/restored_fence.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>
#include <optional>
#include <set>
#include <system_error>

#include <spdlog/spdlog.h>

#include "migratefs/wire.h"
#include "net/image_identity.h"
#include "net/image_name.h"
#include "net/migration/convergence.h"

namespace migratefs::migration {

namespace {
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The link counts as live (for the phase 2 -> 3 decision) if it acknowledged anything
// this recently while frames were outstanding.
constexpr milliseconds kLiveLinkAckAge{500};

// Errors that retrying cannot fix: the target refuses the name or the request itself.
// Everything else (unreachable, auth, I/O such as a full disk, busy) is retried with
// backoff, so an operator can fix the cause without restarting the migration.
bool IsPermanent(const std::string& reason) {
  for (const char* code : {errc::kBadName, errc::kInvalidArgument, errc::kBadRequest, errc::kNotFound, errc::kTooLarge,
                           errc::kTargetIsSelf, errc::kTargetExists})
    if (reason.find(std::string(code) + ":") != std::string::npos) return true;
  return false;
}

}  // namespace

Migration::Migration(std::string id, const StartRequest& req, MigrationContext* ctx)
    : id_(std::move(id)),
      names_(req.images),
      target_(req.target),
      overwrite_(req.overwrite),
      force_(req.force),
      marking_(ctx->marking.OverriddenBy(net::SocketMarking{req.dscp, req.so_priority})),
      copy_(req.copy),
      ctx_(ctx),
      phase_(phase::kConnecting),
      net_bucket_(req.network_kbps * 1000),
      disk_bucket_(req.disk_kbps * 1000) {
  backlog_.Configure(req.mirror, Clock::now());
}

Result<std::unique_ptr<Migration>> Migration::Create(std::string id, const StartRequest& req,
                                                     MigrationContext* ctx) {
  if (req.images.empty()) return MakeError(errc::kBadRequest, "start: \"images\" is empty");
  if (Status st = ValidateMirrorMode(req.mirror); !st.ok()) return st.error();
  if (req.copy.precopy_pct > 100) return MakeError(errc::kInvalidArgument, "start: precopy_pct must be 0..100");
  if (req.copy.postcopy_timeout_s == 0 || req.copy.postcopy_timeout_s > wire::kMaxPostcopyTimeoutS)
    return MakeError(errc::kInvalidArgument, "start: postcopy_timeout_s must be 1..86400");
  std::unique_ptr<Migration> m(new Migration(std::move(id), req, ctx));
  std::set<std::pair<dev_t, ino_t>> seen;
  for (const std::string& name : req.images) {
    if (Status valid = net::ValidateImageName(name); !valid.ok()) return valid.error();
    int fd = net::OpenImageBeneath(ctx->src_dirfd, name);
    if (fd < 0) {
      int err = errno;
      if (err == ENOENT) return MakeError(errc::kNotFound, "image \"" + name + "\" does not exist");
      if (err == EXDEV || err == ELOOP)
        return MakeError(errc::kBadName, "image \"" + name + "\" leaves the served directory or is a symlink");
      if (err == EMFILE || err == ENFILE)
        return MakeError(errc::kResourceExhausted, "cannot open image \"" + name + "\": " + std::strerror(err));
      return MakeError(errc::kIo, "cannot open image \"" + name + "\": " + std::strerror(err));
    }
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      return MakeError(errc::kInvalidArgument, "image \"" + name + "\" is not a regular file");
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    if (!seen.insert({st.st_dev, st.st_ino}).second) {
      ::close(fd);
      return MakeError(errc::kInvalidArgument, "image \"" + name + "\" is listed twice");
    }
    m->images_.push_back(
        std::make_unique<ImageMigration>(m.get(), name, fd, st.st_dev, st.st_ino, ctx->block_size));
  }
  return m;
}

Migration::~Migration() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (control_.joinable()) control_.join();
  StopSenders();
  DetachHooks();
  DropPeer();
}

void Migration::Begin() {
  // Hooks first: from here on every write marks its blocks, so whatever the initial
  // scan decides, nothing written later can be missed.
  for (auto& img : images_) {
    img->bitmap().Resize(img->BlocksFor(img->CurrentSize()));
    ctx_->hooks->Attach(img->dev(), img->ino(), HookOf(img.get()));
  }
  if (copy_.hybrid) CountDataBlocks();
  SetPhase(phase::kConnecting, "phase");
  control_ = std::thread([this] { RunGuarded(); });
}

Status Migration::StampIdentities() {
  for (auto& img : images_) {
    auto id = net::EnsureImageIdentity(img->fd());
    if (!id.ok()) return Error{id.error().code, "image \"" + img->name() + "\": " + id.error().message};
    img->set_identity(id.value());
  }
  return OkStatus();
}

net::ImageOrigin Migration::OriginOf(const ImageMigration& img) const {
  return net::ImageOrigin{img.identity(), ctx_->instance_id, overwrite_};
}

std::shared_ptr<ImageHook> Migration::HookOf(ImageMigration* img) {
  // Non-owning: the migration detaches its hooks before its images die.
  return std::shared_ptr<ImageHook>(std::shared_ptr<ImageHook>{}, img);
}

void Migration::DetachHooks() {
  // Only our own hooks: a migration that was refused (busy, a missing or duplicate
  // name) never attached any, and must not take away those of the migration or fence
  // that holds the same inode.
  for (auto& img : images_) ctx_->hooks->Detach(img->dev(), img->ino(), img.get());
}

std::shared_ptr<net::PeerClient> Migration::peer() {
  std::lock_guard<std::mutex> lock(mu_);
  return peer_;
}

void Migration::OnPeerError(const Status& error) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (peer_error_.empty()) peer_error_ = error.error().code + ": " + error.error().message;
  }
  cv_.notify_all();
}

void Migration::NoteSent(uint64_t bytes) {
  bytes_sent_.fetch_add(bytes);
  net_meter_.Add(bytes);
}

void Migration::NoteMirrored(uint64_t bytes) {
  bytes_mirrored_.fetch_add(bytes);
  net_meter_.Add(bytes);
}

void Migration::SetPhase(const char* phase, const char* event_type, const std::string& detail) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    phase_ = phase;
    // A postcopy that lost its link stays "postcopy" (the target runs the VM), with why.
    if (std::strcmp(phase, phase::kPaused) == 0 || std::strcmp(phase, phase::kFailed) == 0 ||
        std::strcmp(event_type, "paused") == 0)
      reason_ = detail;
    else reason_.clear();
  }
  spdlog::info("migration {}: {}{}{}", id_, phase, detail.empty() ? "" : ": ", detail);
  if (ctx_->events) ctx_->events->Publish(Event{id_, event_type, phase, detail, NowSeconds()});
}

bool Migration::SleepInterruptible(milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, d, [this] { return stop_; });
  return !stop_;
}

bool Migration::terminal() const {
  std::lock_guard<std::mutex> lock(mu_);
  return phase_ == phase::kFinished || phase_ == phase::kCancelled || phase_ == phase::kFailed;
}

bool Migration::HoldsImages() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (phase_ == phase::kFinished) return !released_;
  return phase_ != phase::kCancelled && phase_ != phase::kFailed;
}

uint64_t Migration::DirtyBlocks() const {
  uint64_t n = 0;
  for (auto& img : images_) n += img->bitmap().count();
  return n;
}

// --- control thread -------------------------------------------------------------

// No exception may leave a thread (it would terminate the daemon and with it every
// VM's mount): one that escapes the control loop -- no thread for a sender, no memory,
// no descriptor for the peer's I/O thread -- fails this migration only.
void Migration::RunGuarded() {
  try {
    Run();
  } catch (const std::exception& e) {
    spdlog::error("migration {}: {}", id_, e.what());
    for (auto& img : images_) img->SetMirroring(false);
    StopSenders();
    DropPeer();
    DetachHooks();
    SetPhase(phase::kFailed, "failed", std::string(errc::kResourceExhausted) + ": " + e.what());
  }
}

void Migration::Run() {
  milliseconds backoff(1000);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
    }
    bool first = !ever_connected_;
    if (ConnectAndOpen(first)) {
      const auto connected_at = Clock::now();
      const uint64_t sent_before = bytes_sent_.load() + bytes_mirrored_.load();
      RunConnected();
      if (terminal()) return;
      // A connection that got somewhere resets the backoff. One that failed at once
      // without moving a block (a full target disk, a target that errs on every write)
      // is retried like a dead peer, doubling, instead of resending into it in a loop.
      const bool progressed = bytes_sent_.load() + bytes_mirrored_.load() >= sent_before + ctx_->block_size &&
                              Clock::now() - connected_at >= std::chrono::seconds(5);
      if (progressed) {
        backoff = milliseconds(1000);
        continue;
      }
      if (!SleepInterruptible(backoff)) return;
      backoff = std::min(backoff * 2, ctx_->max_backoff);
      continue;
    }
    if (terminal()) return;
    std::string why;
    {
      std::lock_guard<std::mutex> lock(mu_);
      why = reason_;
    }
    if (IsPermanent(why) || (postcopy_ && why.find(std::string(errc::kWrongState) + ":") != std::string::npos)) {
      // After the hand-over the source copy stays fenced whatever happens: the VM's
      // writes since are on the target only (release lifts the fence).
      if (!postcopy_) DetachHooks();
      if (postcopy_) MarkPostcopy(false);  // nothing to resume: the target gave the copy up
      SetPhase(phase::kFailed, "failed", why);
      return;
    }
    // Paused: wait and retry, doubling up to max_backoff; give up after fail_after
    // (never in postcopy: the target needs this copy until its last block).
    if (!postcopy_ && Clock::now() - paused_since_ >= ctx_->fail_after) {
      std::string why;
      {
        std::lock_guard<std::mutex> lock(mu_);
        why = reason_;
      }
      DetachHooks();
      SetPhase(phase::kFailed, "failed", "gave up after " +
                                             std::to_string(ctx_->fail_after.count() / 1000) +
                                             " s paused; last error: " + why);
      return;
    }
    if (!SleepInterruptible(backoff)) return;
    backoff = std::min(backoff * 2, ctx_->max_backoff);
  }
}

void Migration::Pause(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ != phase::kPaused) paused_since_ = Clock::now();
  }
  SetPhase(postcopy_ ? phase::kPostcopy : phase::kPaused, "paused", reason);
}

bool Migration::ConnectAndOpen(bool first) {
  net::PeerClientOptions opts;
  opts.target = target_;
  opts.key = ctx_->key;
  // 16 MiB in flight covers 1 Gb/s at 100 ms RTT; more only delays a new limit.
  opts.max_inflight_bytes = 16ull << 20;
  opts.marking = marking_;
  opts.coalesce_delay = ctx_->mirror_coalesce;
  opts.awaited_batch_after = ctx_->mirror_batch_after;
  opts.awaited_batch_wait = ctx_->mirror_batch_wait;
  auto client = ctx_->connect(opts);
  if (!client.ok()) {
    Pause(client.error().code + ": " + client.error().message);
    return false;
  }
  std::shared_ptr<net::PeerClient> peer(std::move(client.value()));
  {
    std::lock_guard<std::mutex> lock(fetch_mu_);
    early_map_.clear();  // handles of an older connection
  }
  peer->SetFetchHandler([this](uint32_t handle, uint64_t first, uint64_t count, bool waiting) {
    OnFetch(handle, first, count, waiting);
  });
  for (auto& img : images_) {
    if (postcopy_done_.count(img.get())) continue;  // complete on the target already
    // resume = true always: after a pause or a source restart the target's partial copy
    // is compared, never thrown away. After the hand-over it reattaches to the
    // target's postcopy instead.
    net::ImageOrigin origin = OriginOf(*img);
    origin.postcopy = postcopy_;
    auto opened = peer->OpenImage(img->name(), img->CurrentSize(), uint32_t(ctx_->block_size), true, origin);
    if (!opened.ok()) {
      Pause("opening \"" + img->name() + "\" on the target: " + opened.error().code + ": " +
            opened.error().message);
      return false;
    }
    img->handle.store(opened.value().handle);
    if (postcopy_) TakeEarlyMap(*img);
    if (first && !force_) {
      if (std::string short_of = RoomOnTarget(*img, opened.value()); !short_of.empty()) {
        Pause(short_of);
        return false;
      }
    }
    if (first) InitialCompare(*img, *peer, opened.value().existed && opened.value().target_size > 0);
  }
  if (first && copy_.hybrid && !postcopy_) DeferHottest();
  {
    std::lock_guard<std::mutex> lock(mu_);
    peer_ = peer;
    peer_error_.clear();
    ever_connected_ = true;
  }
  return true;
}

std::string Migration::RoomOnTarget(const ImageMigration& img, const net::PeerClient::OpenedImage& opened) const {
  struct stat st {};
  if (::fstat(img.fd(), &st) != 0) return "";
  const uint64_t allocated = uint64_t(st.st_blocks) * 512;
  // What an existing copy already holds needs no new room (an estimate: its size).
  const uint64_t have = opened.existed ? std::min(opened.target_size, allocated) : 0;
  const uint64_t need = allocated - have;
  if (need <= opened.free_bytes) return "";
  return std::string(errc::kTargetFull) + ": \"" + img.name() + "\" needs about " + std::to_string(need) +
         " more bytes on the target, which has " + std::to_string(opened.free_bytes) +
         " free; free space there (the migration retries), or start with force";
}

void Migration::InitialCompare(ImageMigration& img, net::PeerClient& peer, bool target_has_copy) {
  uint64_t size = img.CurrentSize();
  uint64_t bs = ctx_->block_size;
  uint64_t blocks = img.BlocksFor(size);
  if (!target_has_copy) {
    // Fresh target: it is all hole, so only blocks holding data need to travel.
    for (const auto& [first, last] : img.DataRuns()) img.bitmap().SetRange(first, last - first + 1);
    return;
  }
  // The target holds a copy from an earlier attempt (or a restarted source): compare
  // per-block hashes and mark only the blocks that differ. Writes during the compare
  // mark their blocks through the hook, so a block hashed "equal" and then written is
  // still sent.
  std::vector<char> buf(bs);
  constexpr uint64_t kBatch = 256;
  for (uint64_t first = 0; first < blocks; first += kBatch) {
    uint64_t count = std::min(kBatch, blocks - first);
    auto remote = peer.HashBlocks(img.handle.load(), first, count);
    if (!remote.ok() || remote.value().size() != count) {
      img.bitmap().SetRange(first, blocks - first);  // cannot compare: send the rest
      return;
    }
    for (uint64_t i = 0; i < count; i++) {
      ssize_t n = ::pread(img.fd(), buf.data(), bs, off_t((first + i) * bs));
      if (n < 0 || net::HashBlock(buf.data(), size_t(n)) != remote.value()[i]) img.bitmap().Set(first + i);
    }
  }
}

// Runs while connected: walks bulk -> dirty -> mirror and watches for a lost peer.
void Migration::RunConnected() {
  bool resumed = passes_.load() > 0;
  passes_.store(0);
  if (postcopy_) SetPhase(phase::kPostcopy, "resumed");
  else SetPhase(resumed ? phase::kDirty : phase::kBulk, resumed ? "resumed" : "phase");
  StartSenders();
  ConvergenceWatch watch(ctx_->block_size, ctx_->converge_stall, Clock::now());
  for (;;) {
    std::string error;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, milliseconds(20), [this] { return stop_ || !peer_error_.empty(); });
      if (stop_) break;
      error = peer_error_;
      if (error.empty() && peer_ && !peer_->alive()) error = "peer_unreachable: connection lost";
    }
    if (error.empty() && mirror_outstanding_.load() > 0) {
      auto since = std::chrono::steady_clock::duration(Clock::now().time_since_epoch().count() - last_ack_ns_.load());
      if (since > ctx_->mirror_stall)
        error = "peer_unreachable: no acknowledgement for " +
                std::to_string(std::chrono::duration_cast<milliseconds>(since).count()) +
                " ms while the VM's writes waited for it";
    }
    if (!error.empty()) {
      // Back to marking first, then tear the connection down: its pending acks fail
      // and re-mark their blocks (I4: the VM never notices).
      for (auto& img : images_) img->SetMirroring(false);
      StopSenders();
      DropPeer();
      Pause(error);
      return;
    }
    std::string phase;
    {
      std::lock_guard<std::mutex> lock(mu_);
      phase = phase_;
    }
    if (copy_.hybrid && (phase == phase::kBulk || phase == phase::kDirty) && HybridReady()) {
      spdlog::info("migration {}: {} of {} data blocks missing on the target: mirroring, ready to hand over", id_,
                   MissingBlocks(), data_blocks_);
      EnterMirror();
    } else if (phase == phase::kBulk && passes_.load() >= 1) {
      SetPhase(phase::kDirty, "phase");
      watch = ConvergenceWatch(ctx_->block_size, ctx_->converge_stall, Clock::now());
    } else if (phase == phase::kDirty && passes_.load() >= 1) {
      std::string why =
          watch.Observe(PrecopyDirtyBlocks(), net_meter_.Rate(), dirty_meter_.Rate(), LinkLive(), Clock::now());
      if (!why.empty()) {
        spdlog::info("migration {}: switching to mirroring ({})", id_, why);
        EnterMirror();
      }
    } else if (phase == phase::kMirror) {
      AnnounceMirrorSwitch();
      AnnounceIfCompleted();
    } else if (phase == phase::kPostcopy) {
      if (MissingBlocks() == 0) {
        if (auto peer = this->peer()) FinishPostcopy(*peer);
      }
    } else if (phase == phase::kFinished) {
      StopSenders();
      return;
    }
  }
  for (auto& img : images_) img->SetMirroring(false);
  StopSenders();
}

bool Migration::LinkLive() const {
  // Live: everything sent is acknowledged, or something was acknowledged lately.
  if (data_inflight_.load() == 0 && mirror_outstanding_.load() == 0) return true;
  const auto since = Clock::now().time_since_epoch() - Clock::duration(last_ack_ns_.load());
  return since < kLiveLinkAckAge;
}

void Migration::EnterMirror() {
  NoteAck();  // the stall watchdog counts from here at the earliest
  // Mirroring on first, then the last drain (DESIGN.md phase 3): a write that still
  // marked a bit has finished when SetMirroring returns, and the senders keep draining.
  for (auto& img : images_) img->SetMirroring(true);
  ReleaseDeferred();  // the drain takes the hot blocks too: their writes are mirrored now
  {
    std::lock_guard<std::mutex> lock(mu_);
    completed_event_sent_ = false;
  }
  SetPhase(phase::kMirror, "phase");
}

bool Migration::DrainedLocked() {
  if (postcopy_ || phase_ == phase::kPostcopy) return true;  // handed over: completed long ago
  if (phase_ != phase::kMirror && phase_ != phase::kFinished) return false;
  // An asynchronous mirror counts as completed only while its backlog is bounded:
  // not while writes wait for it to drain below the low mark.
  if (phase_ == phase::kMirror && backlog_.Snap(Clock::now()).mode == "async-throttled") return false;
  if (copy_.hybrid && phase_ == phase::kMirror) return HybridReady();
  return DirtyBlocks() == 0 && data_inflight_.load() == 0;
}

void Migration::AnnounceMirrorSwitch() {
  bool throttled = false;
  if (!backlog_.TakeSwitch(&throttled)) return;
  const auto snap = backlog_.Snap(Clock::now());
  const std::string detail = throttled ? "backlog " + std::to_string(snap.backlog_bytes) +
                                             " bytes over the high mark: writes wait for the target"
                                       : "backlog below the low mark: writes asynchronous again";
  spdlog::info("migration {}: mirror {}", id_, detail);
  if (ctx_->events) ctx_->events->Publish(Event{id_, "mirror_mode", phase::kMirror, detail, NowSeconds()});
}

Status Migration::SetMirrorMode(const MirrorMode& m) {
  if (Status st = ValidateMirrorMode(m); !st.ok()) return st;
  backlog_.Configure(m, Clock::now());
  return OkStatus();
}

bool Migration::Completed() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == phase::kFinished) return true;
  }
  // Whoever sees completion first announces it, so no `completed` event is ever missed
  // (a broker may call finish right after query_completion said true).
  return AnnounceIfCompleted();
}

bool Migration::AnnounceIfCompleted() {
  bool announce = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!DrainedLocked()) return false;
    announce = !completed_event_sent_;
    completed_event_sent_ = true;
  }
  if (announce) {
    spdlog::info("migration {}: completed (every block on the target, writes mirrored)", id_);
    if (ctx_->events) ctx_->events->Publish(Event{id_, "completed", phase::kMirror, "", NowSeconds()});
  }
  return true;
}

void Migration::DropPeer() {
  std::shared_ptr<net::PeerClient> old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    old.swap(peer_);
  }
  old.reset();  // fails every pending ack (they re-mark their blocks)
  // Acks of the old connection may still be running on its thread; wait them out.
  for (int i = 0; i < 5000 && data_inflight_.load() > 0; i++) std::this_thread::sleep_for(milliseconds(1));
}

}  // namespace migratefs::migration
