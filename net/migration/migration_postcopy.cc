// Migration's hybrid copy (issue 10; seed 002): when it counts as completed, the
// hand-over at finish, the target's fetch requests, and postcopy's end. See
// migration.h, and net/README.md "Hybrid copy" for the protocol.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <future>

#include "net/migration/migration.h"
#include "net/migration/restored_fence.h"

namespace migratefs::migration {

namespace {
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A target asks for the blocks one read touches; more than this in one frame is not
// a reader (and is not worth a queue entry each).
constexpr uint64_t kMaxFetchRun = 4096;
}  // namespace

uint64_t Migration::MissingBlocks() const {
  uint64_t n = DirtyBlocks();
  std::lock_guard<std::mutex> lock(inflight_mu_);
  for (const auto& [at, sends] : inflight_blocks_)
    if (!at.first->bitmap().Test(at.second)) n++;
  return n;
}

void Migration::NoteInflight(ImageMigration* img, uint64_t block, int delta) {
  std::lock_guard<std::mutex> lock(inflight_mu_);
  int& sends = inflight_blocks_[{img, block}];
  sends += delta;
  if (sends <= 0) inflight_blocks_.erase({img, block});
}

bool Migration::HybridReady() const {
  return MissingBlocks() * 100 <= data_blocks_ * uint64_t(100 - copy_.precopy_pct);
}

void Migration::CountDataBlocks() {
  data_blocks_ = 0;
  for (auto& img : images_)
    for (const auto& [first, last] : img->DataRuns()) data_blocks_ += last - first + 1;
}

// Called by Finish with the source fenced (no write can start; those in flight are
// done), so the bitmap can only shrink from here: what it holds once nothing is in
// flight is exactly what the target lacks.
Status Migration::HandOver(std::shared_ptr<net::PeerClient> peer,
                           const std::function<Status(const Error&)>& unfence) {
  handing_over_.store(true);  // senders claim no more blocks
  auto fail = [&](const Error& e) {
    handing_over_.store(false);
    work_bell_.RingAll();
    return unfence(e);
  };
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (data_inflight_.load() != 0 || mirror_outstanding_.load() != 0) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!peer_error_.empty() || peer_ != peer)
        return fail(MakeError(errc::kPeerUnreachable, "peer lost while handing over: " + peer_error_));
    }
    if (Clock::now() > deadline) return fail(MakeError(errc::kInternal, "finish: in-flight blocks not acknowledged in 60 s"));
    std::this_thread::sleep_for(milliseconds(2));
  }
  uint64_t remote = 0;
  size_t handed = 0;
  for (auto& img : images_) {
    DirtyBitmap& bits = img->bitmap();
    std::string map((bits.size() + 7) / 8, '\0');
    for (uint64_t b = bits.FindNextSet(0); b < bits.size(); b = bits.FindNextSet(b + 1)) {
      map[b / 8] = char(uint8_t(map[b / 8]) | (1u << (b % 8)));
      remote++;
    }
    std::promise<Status> resized;
    auto got = resized.get_future();
    peer->SendResize(img->handle.load(), img->CurrentSize(), [&resized](const Status& s) { resized.set_value(s); });
    Status st = got.get();
    if (st.ok()) st = peer->StartPostcopy(img->handle.load(), img->CurrentSize(), copy_.postcopy_timeout_s, std::move(map));
    if (!st.ok()) {
      // Half handed over (a multi-image VM): finish fails and the source is unfenced,
      // so the copies already handed over must become partial copies again. A new
      // connection reopens them, and the target gives back each one the VM never used
      // (ReceiveGuard::CheckReceivable). The peer error comes first, so that this
      // connection is torn down rather than mirroring the unfenced writes into them.
      if (handed > 0) {
        OnPeerError(MakeError(errc::kPeerUnreachable, "hand-over failed after " + std::to_string(handed) +
                                                          " image(s): reconnecting so the target gives them back"));
      }
      return fail(Error{st.error().code, "handing \"" + img->name() + "\" over: " + st.error().message});
    }
    handed++;
  }
  // Before the phase changes, so a push that ends at once cannot clear it first.
  MarkPostcopy(true);
  postcopy_.store(true);
  handing_over_.store(false);
  work_bell_.RingAll();
  for (auto& img : images_) img->SetMirroring(false);
  for (auto& img : images_) {
    if (const int err = PersistFence(img->fd(), target_); err != 0) {
      spdlog::warn("migration {}: \"{}\": cannot mark the fence ({}); it is lost if this daemon restarts", id_,
                   img->name(), std::strerror(err));
    }
  }
  SetPhase(phase::kPostcopy, "handed_over",
           "the target runs the VM; " + std::to_string(remote) + " blocks still to push, source copies fenced");
  cv_.notify_all();
  return OkStatus();
}

void Migration::FinishPostcopy(net::PeerClient& peer) {
  // A refusal (a block still remote there) is asked again a second later, not at once.
  if (Clock::now() < next_finish_try_) return;
  next_finish_try_ = Clock::now() + std::chrono::seconds(1);
  for (auto& img : images_) {
    if (postcopy_done_.count(img.get())) continue;
    Status st = peer.FinishImage(img->handle.load());  // fsync; the copy is complete there
    if (!st.ok()) {
      spdlog::warn("migration {}: finishing \"{}\" after postcopy: {}: {}", id_, img->name(), st.error().code,
                   st.error().message);
      return;  // the next round tries again
    }
    postcopy_done_.insert(img.get());
  }
  MarkPostcopy(false);
  SetPhase(phase::kFinished, "finished", "postcopy done: every block on the target; source copies fenced until release");
  cv_.notify_all();
}

void Migration::MarkPostcopy(bool on) {
  if (postcopy_record_.empty()) return;
  for (auto& img : images_) {
    const int err = on ? PersistPostcopyMark(img->fd(), postcopy_record_) : ClearPostcopyMark(img->fd());
    if (err != 0 && !(err == ENOTSUP && !on)) {
      spdlog::warn("migration {}: \"{}\": cannot {} the postcopy mark ({}){}", id_, img->name(), on ? "set" : "clear",
                   std::strerror(err), on ? ": a full restart of this daemon would not resume the push" : "");
    }
  }
}

void Migration::ResumePostcopy() {
  postcopy_.store(true);
  ever_connected_ = true;  // no room check, no comparison: the target's map says it all
  for (auto& img : images_) img->SetFenced(true);
}

void Migration::OnFetch(uint32_t handle, uint64_t first, uint64_t count, bool waiting) {
  ImageMigration* img = nullptr;
  size_t index = 0;
  for (; index < images_.size(); index++) {
    if (images_[index]->handle.load() == handle) {
      img = images_[index].get();
      break;
    }
  }
  if (!postcopy_.load()) return;
  if (img == nullptr && !waiting) {
    // The map arrives before the open's ack that tells us the handle (ConnectAndOpen).
    std::lock_guard<std::mutex> lock(fetch_mu_);
    early_map_.push_back({handle, first, count});
    return;
  }
  if (img == nullptr) return;
  if (!waiting) {
    // Marked before the open's ack returns (the I/O thread dispatches in order), so
    // the control thread never sees "nothing missing" before the map is in.
    for (uint64_t b = first; b < first + count && b < img->bitmap().size(); b++) img->bitmap().Set(b);
    work_bell_.Ring();
    return;
  }
  count = std::min(count, kMaxFetchRun);
  const auto now = Clock::now();
  {
    std::lock_guard<std::mutex> lock(fetch_mu_);
    for (uint64_t b = first; b < first + count && b < img->bitmap().size(); b++) {
      // In flight already: its ack still counts as the answer to this reader.
      fetch_asked_.emplace(std::make_pair(img, b), now);
      if (img->bitmap().Test(b)) fetch_queue_.emplace_back(img, b);
    }
  }
  // The background push goes on right after the miss: a reader that missed there
  // is likely to read on (seed 002's locality; xNBD does the same).
  {
    std::lock_guard<std::mutex> lock(scan_mu_);
    scan_image_ = index;
    scan_block_ = first + count;
  }
  work_bell_.Ring();  // a reader waits: an idle sender serves it now, not at its next look
}

void Migration::TakeEarlyMap(ImageMigration& img) {
  std::lock_guard<std::mutex> lock(fetch_mu_);
  for (const EarlyRun& r : early_map_)
    if (r.handle == img.handle.load())
      for (uint64_t b = r.first; b < r.first + r.count && b < img.bitmap().size(); b++) img.bitmap().Set(b);
  work_bell_.Ring();
}

bool Migration::ClaimFetched(ImageMigration** img, uint64_t* block) {
  std::lock_guard<std::mutex> lock(fetch_mu_);
  while (!fetch_queue_.empty()) {
    auto [im, b] = fetch_queue_.front();
    fetch_queue_.pop_front();
    if (!im->bitmap().Test(b)) continue;  // sent meanwhile
    *img = im;
    *block = b;
    return true;
  }
  return false;
}

void Migration::NotePostcopyAck(ImageMigration* img, uint64_t block, uint64_t bytes) {
  const auto now = Clock::now();
  std::lock_guard<std::mutex> lock(fetch_mu_);
  auto it = fetch_asked_.find({img, block});
  if (it == fetch_asked_.end()) {
    bytes_pulled_ += bytes;
    return;
  }
  bytes_fetched_ += bytes;
  fetch_latency_.Add(now, now - it->second);
  fetch_asked_.erase(it);
}

void Migration::FillPostcopyProgress(Progress& p) {
  p.mode = "hybrid";
  p.precopy_pct = copy_.precopy_pct;
  p.data_blocks = data_blocks_;
  p.blocks_remote = MissingBlocks();
  const auto now = Clock::now();
  std::lock_guard<std::mutex> lock(fetch_mu_);
  p.bytes_pulled = bytes_pulled_;
  p.bytes_fetched_on_demand = bytes_fetched_;
  p.fetch_latency_p50_ms = fetch_latency_.Quantile(now, 0.5);
  p.fetch_latency_p99_ms = fetch_latency_.Quantile(now, 0.99);
}

}  // namespace migratefs::migration
