// Migration's answers to control requests: limits, progress, finish (fence), cancel,
// verify, release. See migration.h.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>

#include <spdlog/spdlog.h>

#include "net/migration/migration.h"
#include "net/migration/restored_fence.h"
#include "net/peer/peer_client.h"

namespace migratefs::migration {

namespace {
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
}  // namespace

Status Migration::SetNetworkLimit(uint64_t kbps) {
  net_bucket_.SetRate(kbps * 1000);
  limit_bell_.RingAll();
  return OkStatus();
}

Status Migration::SetDiskLimit(uint64_t kbps) {
  disk_bucket_.SetRate(kbps * 1000);
  return OkStatus();
}

Progress Migration::GetProgress(RateKind what) {
  Progress p;
  {
    std::lock_guard<std::mutex> lock(mu_);
    p.phase = phase_;
    p.pause_reason = reason_;
  }
  for (auto& img : images_) {
    uint64_t size = img->CurrentSize();
    p.bytes_total += size;
    uint64_t dirty = img->bitmap().count();
    p.dirty_blocks += dirty;
    p.bytes_left += std::min(size, dirty * ctx_->block_size);
  }
  // Sent but not yet acknowledged is still left: it may be in a queue on this host.
  p.bytes_left += inflight_bytes_.load();
  p.blocks_left = MissingBlocks();  // a block written again while in flight counts once
  p.bytes_sent = bytes_sent_.load();
  p.bytes_mirrored = bytes_mirrored_.load();
  p.network_kbps = net_meter_.Rate() / 1000.0;
  p.disk_kbps = disk_meter_.Rate() / 1000.0;
  p.dirty_kbps = dirty_meter_.Rate() / 1000.0;
  p.kbps = what == RateKind::kNetwork ? p.network_kbps : p.disk_kbps;
  const auto mirror = backlog_.Snap(Clock::now());
  p.mirror_mode = mirror.mode;
  p.backlog_bytes = mirror.backlog_bytes;
  p.backlog_max_bytes = mirror.backlog_max_bytes;
  p.mirror_sync_s = mirror.synchronous_s;
  p.network_limit_kbps = net_bucket_.rate() / 1000;
  p.disk_limit_kbps = disk_bucket_.rate() / 1000;
  // Expression 1 of seed 004 without the hypervisor's share: what is left over what the
  // network gains on the writer. -1 when it gains nothing (no convergence at these rates).
  double gain = (p.network_kbps - p.dirty_kbps) * 1000.0;
  if (p.bytes_left == 0) p.eta_s = 0;
  else if (gain > 0) p.eta_s = double(p.bytes_left) / gain;
  else p.eta_s = -1;
  if (copy_.hybrid) FillPostcopyProgress(p);
  return p;
}

Status Migration::Finish() {
  std::lock_guard<std::mutex> serial(finish_mu_);
  std::shared_ptr<net::PeerClient> peer;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == phase::kFinished || postcopy_) return OkStatus();  // idempotent (handed over: too)
    if (!DrainedLocked())
      return MakeError(errc::kWrongState, "not completed yet (phase " + phase_ + ", " +
                                              std::to_string(DirtyBlocks()) +
                                              " dirty blocks): wait for query_completion");
    peer = peer_;
    finishing_ = true;
  }
  AnnounceIfCompleted();  // in order: completed before finished
  auto unfence = [&](const Error& e) -> Status {
    for (auto& img : images_) img->SetFenced(false);
    std::lock_guard<std::mutex> lock(mu_);
    finishing_ = false;
    return e;
  };
  // Fence first (I6): no new modification can start; re-attaching waits for those
  // already inside the file system, and SetFenced for those inside the hook.
  for (auto& img : images_) {
    img->SetFenced(true);
    ctx_->hooks->Attach(img->dev(), img->ino(), HookOf(img.get()));
  }
  if (copy_.hybrid) return HandOver(peer, unfence);
  auto deadline = Clock::now() + std::chrono::seconds(60);
  // Also the asynchronous mirror's backlog: finish returns only once every write the
  // VM was told is done is on the target (I1), then fsyncs it there.
  while (DirtyBlocks() != 0 || data_inflight_.load() != 0 || mirror_outstanding_.load() != 0) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!peer_error_.empty() || peer_ != peer)
        return unfence(MakeError(errc::kPeerUnreachable, "peer lost while finishing: " + peer_error_));
    }
    if (Clock::now() > deadline) return unfence(MakeError(errc::kInternal, "finish: drain did not end in 60 s"));
    std::this_thread::sleep_for(milliseconds(2));
  }
  for (auto& img : images_) {
    std::promise<Status> resized;
    auto got = resized.get_future();
    peer->SendResize(img->handle.load(), img->CurrentSize(), [&resized](const Status& s) { resized.set_value(s); });
    Status st = got.get();
    if (st.ok()) st = peer->FinishImage(img->handle.load());  // fsync + marks it complete
    if (!st.ok()) return unfence(Error{st.error().code, "finishing \"" + img->name() + "\": " + st.error().message});
  }
  for (auto& img : images_) img->SetMirroring(false);
  // The fence must outlive this daemon (restored_fence.h).
  for (auto& img : images_) {
    if (const int err = PersistFence(img->fd(), target_); err != 0) {
      spdlog::warn("migration {}: \"{}\": cannot mark the fence ({}); it is lost if this daemon restarts", id_,
                   img->name(), std::strerror(err));
    }
  }
  SetPhase(phase::kFinished, "finished", "source copies fenced (writes get EROFS) until release");
  cv_.notify_all();
  return OkStatus();
}

Status Migration::Cancel(bool keep_partial) {
  std::lock_guard<std::mutex> serial(finish_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == phase::kCancelled) return OkStatus();
    if (phase_ == phase::kFinished)
      return MakeError(errc::kWrongState, "already finished; the target copy is complete (use release)");
    if (postcopy_)
      return MakeError(errc::kWrongState,
                       "handed over (hybrid finish): the VM runs on the target, which still needs blocks of this copy; "
                       "cancel is refused, wait for phase finished");
    stop_ = true;
  }
  cv_.notify_all();
  if (control_.joinable() && control_.get_id() != std::this_thread::get_id()) control_.join();
  StopSenders();
  for (auto& img : images_) {
    img->SetMirroring(false);
  }
  DetachHooks();  // the source is untouched from here on
  // Tell the target what to do with its copy: over the live connection, or a fresh one.
  std::shared_ptr<net::PeerClient> peer = this->peer();
  if (!peer || !peer->alive()) {
    auto c = ConnectAside();
    if (c.ok()) {
      peer = std::move(c.value());
      for (auto& img : images_) {
        auto opened =
            peer->OpenImage(img->name(), img->CurrentSize(), uint32_t(ctx_->block_size), true, OriginOf(*img));
        if (opened.ok()) img->handle.store(opened.value().handle);
      }
    } else {
      peer.reset();
    }
  }
  std::string detail = keep_partial ? "target copy kept, marked incomplete" : "target copy removed";
  if (peer) {
    for (auto& img : images_) {
      Status st = peer->AbortImage(img->handle.load(), keep_partial);
      if (!st.ok()) detail = "target copy of \"" + img->name() + "\" left as is: " + st.error().message;
    }
  } else {
    detail = "target unreachable: its partial copy is left as is (marked receiving)";
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    peer_.reset();
  }
  peer.reset();
  SetPhase(phase::kCancelled, "cancelled", detail);
  return OkStatus();
}

Result<std::unique_ptr<net::PeerClient>> Migration::ConnectAside() {
  net::PeerClientOptions opts;
  opts.target = target_;
  opts.key = ctx_->key;
  opts.connect_timeout = milliseconds(2000);
  opts.marking = marking_;
  return ctx_->connect(opts);
}

// While the migration streams, verify asks over its own connection, so each hash
// comes after every write sent before it. Once the target has closed its handles
// (finished, cancelled, failed) or the link is down, it asks over a connection of its
// own that opens the copies read-only (PeerClient::OpenForVerify): nothing on the
// target changes, and after finish the VM may already be writing there (its writes
// then show as mismatches: a snapshot, not a guarantee).
Result<VerifyReport> Migration::Verify() {
  std::lock_guard<std::mutex> serial(finish_mu_);
  std::shared_ptr<net::PeerClient> peer = this->peer();
  std::vector<uint32_t> handles;
  if (!terminal() && peer && peer->alive()) {
    for (auto& img : images_) handles.push_back(img->handle.load());
  } else {
    auto aside = ConnectAside();
    if (!aside.ok()) {
      return Error{aside.error().code, "verify: cannot reach the target " + target_ + ": " + aside.error().message};
    }
    peer = std::move(aside.value());
    for (auto& img : images_) {
      auto opened = peer->OpenForVerify(img->name(), uint32_t(ctx_->block_size), OriginOf(*img));
      if (!opened.ok()) {
        return Error{opened.error().code, "verify: " + opened.error().message};
      }
      handles.push_back(opened.value().handle);
    }
  }
  VerifyReport report;
  const uint64_t bs = ctx_->block_size;
  std::vector<char> buf(bs);
  constexpr uint64_t kBatch = 256;
  for (size_t k = 0; k < images_.size(); k++) {
    ImageMigration* img = images_[k].get();
    uint64_t blocks = img->BlocksFor(img->CurrentSize());
    for (uint64_t first = 0; first < blocks; first += kBatch) {
      uint64_t count = std::min(kBatch, blocks - first);
      auto remote = peer->HashBlocks(handles[k], first, count);
      if (!remote.ok()) return remote.error();
      for (uint64_t i = 0; i < count && i < remote.value().size(); i++) {
        ssize_t n = ::pread(img->fd(), buf.data(), bs, off_t((first + i) * bs));
        if (n < 0) return MakeError(errc::kIo, "reading \"" + img->name() + "\": " + std::strerror(errno));
        report.blocks_compared++;
        if (net::HashBlock(buf.data(), size_t(n)) == remote.value()[i]) continue;
        uint64_t off = (first + i) * bs;
        auto& m = report.mismatches;
        if (!m.empty() && m.back().image == img->name() && m.back().offset + m.back().length == off)
          m.back().length += uint64_t(n);
        else
          m.push_back({img->name(), off, uint64_t(n)});
      }
    }
  }
  report.identical = report.mismatches.empty();
  return report;
}

Status Migration::Release() {
  std::lock_guard<std::mutex> serial(finish_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A postcopy that failed leaves the source copy the only whole one: it may be
    // released too (the VM's writes on the target since the hand-over are not in it).
    if (phase_ != phase::kFinished && !(phase_ == phase::kFailed && postcopy_))
      return MakeError(errc::kWrongState, "only a finished migration can be released");
  }
  for (auto& img : images_) {
    if (const int err = ClearFence(img->fd()); err != 0 && err != ENOTSUP) {
      return MakeError(errc::kIo, "release: \"" + img->name() + "\": " + std::strerror(err));
    }
  }
  for (auto& img : images_) img->SetFenced(false);
  DetachHooks();
  {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
  }
  if (ctx_->events) ctx_->events->Publish(Event{id_, "released", phase::kFinished, "source copies writable again", NowSeconds()});
  return OkStatus();
}

MigrationInfo Migration::Info() {
  MigrationInfo info;
  info.id = id_;
  info.images = names_;
  info.target = target_;
  info.progress = GetProgress(RateKind::kNetwork);
  info.completed = Completed();
  return info;
}

}  // namespace migratefs::migration
