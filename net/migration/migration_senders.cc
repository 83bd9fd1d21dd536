// Migration's sender threads (phases 1-2): claim a dirty block, read it, queue it,
// pay the network limit. See migration.h and, for the locks, net/README.md.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <system_error>

#include <spdlog/spdlog.h>

#include "net/migration/migration.h"

namespace migratefs::migration {

namespace {
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long an idle sender sleeps when nobody rings (work_bell.h): a change that
// forgets to ring costs at most this much delay, never a stuck migration.
constexpr milliseconds kIdleBackstop{100};

// Background blocks in flight at once in postcopy (see SenderLoop).
constexpr int64_t kPostcopyBlocksAhead = 4;

// While mirroring: drain blocks in flight at once, from what the link carried lately
// (bytes acknowledged per second). Two keep a fast link busy; on a slow one each block
// is long on the wire (512 KiB is 0.1 s at 40 Mbit/s), and a mirrored write that cannot
// pass one (its own bytes) and the hand-over at `finish` wait for all of them: one
// then, once the link carries less than two blocks per 100 ms. No rate yet: two.
int64_t DrainBlocksAhead(double acked_bytes_per_s, uint64_t block_size) {
  if (acked_bytes_per_s <= 0) return 2;
  return acked_bytes_per_s * 0.1 < 2.0 * double(block_size) ? 1 : 2;
}

bool AllZero(const char* p, size_t n) {
  if (n == 0) return true;
  return p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0;
}
}  // namespace

void Migration::StartSenders() {
  senders_run_.store(true);
  // A sender that cannot start leaves fewer senders (at least one must run).
  for (unsigned i = 0; i < std::max(1u, ctx_->sender_threads); i++) {
    try {
      senders_.emplace_back([this] { SenderLoop(); });
    } catch (const std::system_error& e) {
      if (senders_.empty()) throw;
      spdlog::warn("migration {}: only {} sender threads: {}", id_, senders_.size(), e.what());
      break;
    }
  }
}

void Migration::StopSenders() {
  senders_run_.store(false);
  cv_.notify_all();
  work_bell_.RingAll();
  limit_bell_.RingAll();
  for (auto& t : senders_) t.join();
  senders_.clear();
}

bool Migration::ClaimNext(ImageMigration** img, uint64_t* block) {
  if (handing_over_.load()) return false;
  std::lock_guard<std::mutex> lock(scan_mu_);
  for (size_t visited = 0; visited <= images_.size(); visited++) {
    if (scan_image_ >= images_.size()) {
      scan_image_ = 0;
      scan_block_ = 0;
      passes_.fetch_add(1);
    }
    ImageMigration* im = images_[scan_image_].get();
    uint64_t b = im->bitmap().FindNextSet(scan_block_);
    while (b < im->bitmap().size() && Deferred(*im, b)) b = im->bitmap().FindNextSet(b + 1);
    if (b < im->bitmap().size()) {
      scan_block_ = b + 1;
      *img = im;
      *block = b;
      return true;
    }
    scan_image_++;
    scan_block_ = 0;
  }
  return false;
}

void Migration::SenderLoop() {
  std::shared_ptr<net::PeerClient> peer = this->peer();
  if (!peer) return;
  // Postcopy: a block a reader on the target waits for goes before the background,
  // past its limit below, and ahead of its frames still queued (SendPace::kAhead).
  auto serve_fetched = [&]() -> SendOutcome {
    ImageMigration* img;
    uint64_t block;
    if (!postcopy_.load() || handing_over_.load() || !ClaimFetched(&img, &block)) return SendOutcome::kNone;
    return SendWhenRoom(*peer, *img, block, net::SendPace::kAhead);
  };
  while (senders_run_.load()) {
    // Read before looking: work published after this wakes the wait below at once.
    const uint64_t seen = work_bell_.generation();
    SendOutcome fetched = serve_fetched();
    if (fetched == SendOutcome::kStop) return;
    if (fetched == SendOutcome::kSent) continue;
    ImageMigration* img;
    uint64_t block;
    if (!ClaimNext(&img, &block)) {
      if (senders_run_.load()) work_bell_.WaitPast(seen, kIdleBackstop);
      continue;
    }
    work_bell_.Ring();  // there may be more: the next idle sender looks too
    // While mirroring, the VM's writes wait for their acks: keep at most two drain
    // blocks ahead of them on the wire (one on a slow link), so a write never queues
    // behind a backlog. Postcopy likewise keeps the background push short, so a block
    // a reader on the target fetches waits behind a few blocks at most, not behind the
    // whole window. Meanwhile this sender serves fetches (holding its claim: see
    // SendWhenRoom).
    const int64_t ahead = img->mirroring()  ? DrainBlocksAhead(net_meter_.Rate(), ctx_->block_size)
                          : postcopy_.load() ? kPostcopyBlocksAhead
                                             : INT64_MAX;
    while (data_inflight_.load() >= ahead && senders_run_.load()) {
      const uint64_t room_seen = work_bell_.generation();
      fetched = serve_fetched();
      if (fetched == SendOutcome::kStop) return;
      // Until a block's ack makes room or a fetch comes (both ring).
      if (fetched == SendOutcome::kNone && data_inflight_.load() >= ahead) work_bell_.WaitPast(room_seen, kIdleBackstop);
    }
    if (SendWhenRoom(*peer, *img, block, net::SendPace::kNow) == SendOutcome::kStop) return;
  }
}

// Waits for room in the window, then sends the claimed block. The claim is held while
// waiting: the scan has moved past this block, so giving it up would leave it for the
// next pass, and phase 1 would end (the scan wraps) with blocks never sent. Only
// stopping or a hand-over (whose map needs the senders idle) drop it; its bit is still
// set then (kNone).
Migration::SendOutcome Migration::SendWhenRoom(net::PeerClient& peer, ImageMigration& img, uint64_t block,
                                               net::SendPace pace) {
  bool room = false;
  while (!room && senders_run_.load() && !handing_over_.load()) {
    room = peer.WaitForWindow(ctx_->block_size, milliseconds(200));
    if (!room && !peer.alive()) return SendOutcome::kStop;
  }
  if (!room) return SendOutcome::kNone;
  return SendBlock(peer, img, block, pace) ? SendOutcome::kSent : SendOutcome::kStop;
}

// Sends one dirty block. Returns false when this sender should stop.
bool Migration::SendBlock(net::PeerClient& peer, ImageMigration& img, uint64_t block, net::SendPace pace) {
  const uint64_t bs = ctx_->block_size;
  const uint64_t off = block * bs;
  img.LockBlocks(block, block);
  // In flight before its bit clears, so MissingBlocks never misses it in between
  // (a hybrid migration counted completed one block early).
  NoteInflight(&img, block, +1);
  if (!img.bitmap().TestAndClear(block)) {  // clear *before* reading (DESIGN.md phase 2)
    NoteInflight(&img, block, -1);
    img.UnlockBlocks(block, block);
    return true;
  }
  // The block is read (O_DIRECT: no page-cache pollution, no copy) into the buffer
  // that goes on the wire, so its bytes are copied only into the socket.
  net::PayloadBuffer owned = peer.AcquireBuffer(uint32_t(bs));
  char* buf = reinterpret_cast<char*>(owned.get());
  ssize_t n = ::pread(img.block_fd(), buf, bs, off_t(off));
  if (n < 0 && errno == EINVAL && img.block_fd() != img.fd()) n = ::pread(img.fd(), buf, bs, off_t(off));
  if (n < 0) {
    int err = errno;
    img.bitmap().Set(block);
    NoteInflight(&img, block, -1);
    img.UnlockBlocks(block, block);
    OnPeerError(MakeError(errc::kIo, "reading \"" + img.name() + "\" on the source: " + std::strerror(err)));
    return false;
  }
  if (n == 0) {  // past EOF: the file shrank; the resize frame carries that
    NoteInflight(&img, block, -1);
    img.UnlockBlocks(block, block);
    return true;
  }
  bool zero = AllZero(buf, size_t(n));
  uint64_t payload = zero ? 0 : uint64_t(n);
  // The block's bit is re-set if any of its frames fails; it stops counting as in
  // flight when the last frame's ack arrives.
  auto ack = [this, &img, block, n](const Status& s) {
    if (!s.ok()) {
      img.bitmap().Set(block);  // the RingAll below wakes a sender for it
      OnPeerError(s);
    } else if (postcopy_.load()) {
      NotePostcopyAck(&img, block, uint64_t(n));
    }
    NoteInflight(&img, block, -1);
    data_inflight_.fetch_sub(1);
    // Room for senders holding a claim (SenderLoop): all of them, since the one
    // Ring() would wake may be an idle one that does not pass it on.
    work_bell_.RingAll();
  };
  // Bytes count as sent when the target acknowledges their frame: the rate the broker
  // reads is what crossed the link, not how fast the send queue filled.
  auto frame_acked = [this](uint64_t len, const Status& s) {
    NoteAck();
    if (s.ok()) NoteSent(len);
    inflight_bytes_.fetch_sub(len);
  };
  data_inflight_.fetch_add(1);
  inflight_bytes_.fetch_add(payload);
  // With a low network limit and no mirroring, a block goes out in slices paid one by
  // one, so any 1 s window stays close to the limit (a 512 KiB block is half a second
  // at 1 MB/s). While mirroring, the stripe lock must not be held across a wait.
  uint64_t rate = net_bucket_.rate();
  uint64_t slice = uint64_t(n);
  // In postcopy the target takes whole blocks only.
  if (!zero && rate != 0 && !img.mirroring() && !postcopy_.load()) slice = std::clamp<uint64_t>(rate / 50, 16 * 1024, uint64_t(n));
  if (zero) {
    peer.RecycleBuffer(std::move(owned), uint32_t(bs));
    peer.SendZero(img.handle.load(), off, uint64_t(n), ack);
  } else if (slice >= uint64_t(n)) {
    peer.SendData(
        img.handle.load(), off, std::move(owned), uint32_t(n),
        [ack, frame_acked, n](const Status& s) {
          frame_acked(uint64_t(n), s);
          ack(s);
        },
        pace);
  } else {
    SendSlices(peer, img, block, std::move(owned), uint64_t(n), slice, ack, frame_acked);
    return true;
  }
  img.UnlockBlocks(block, block);
  if (!zero) PayNetwork(uint64_t(n));
  return true;
}

// A block in slices under a low network limit (issue 16): each slice is queued under
// the block's stripe lock and paid for *without* it, so a VM's resize, fallocate or
// write never waits for the network tokens of a block being sent. Called with the
// stripe lock held; returns with it released. Between two slices a resize or the
// switch to mirroring may have queued newer frames for this block, after which the
// rest of this older copy must not follow them (I3): the rest is dropped and the block
// is marked dirty again, to be sent whole later.
void Migration::SendSlices(net::PeerClient& peer, ImageMigration& img, uint64_t block, net::PayloadBuffer owned,
                           uint64_t n, uint64_t slice, const std::function<void(const Status&)>& ack,
                           const std::function<void(uint64_t, const Status&)>& frame_acked) {
  struct Slices {
    std::atomic<int> left;
    std::mutex mu;
    std::optional<Error> error;
  };
  const uint64_t off = block * ctx_->block_size;
  const char* buf = reinterpret_cast<const char*>(owned.get());
  const int total = int((n + slice - 1) / slice);
  auto slices = std::make_shared<Slices>();
  slices->left = total + 1;  // +1: this loop's own, until it knows how many went out
  auto finish = [slices, ack](int count) {
    if (slices->left.fetch_sub(count) != count) return;
    std::lock_guard<std::mutex> lock(slices->mu);
    ack(slices->error ? Status(*slices->error) : OkStatus());
  };
  const uint64_t generation = img.resize_generation();
  int sent = 0;
  uint64_t done = 0;
  for (; done < n; done += slice) {
    if (sent > 0) {
      img.LockBlocks(block, block);
      if (img.mirroring() || img.resize_generation() != generation || !senders_run_.load()) {
        img.bitmap().Set(block);
        img.UnlockBlocks(block, block);
        work_bell_.Ring();
        break;
      }
    }
    const uint32_t len = uint32_t(std::min<uint64_t>(slice, n - done));
    peer.SendData(img.handle.load(), off + done, buf + done, len, [frame_acked, slices, finish, len](const Status& s) {
      frame_acked(len, s);
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(slices->mu);
        if (!slices->error) slices->error = s.error();
      }
      finish(1);
    });
    ++sent;
    img.UnlockBlocks(block, block);
    PayNetwork(len);
  }
  if (done < n) inflight_bytes_.fetch_sub(n - done);  // never sent, never acknowledged
  peer.RecycleBuffer(std::move(owned), uint32_t(ctx_->block_size));
  finish(total - sent + 1);
}

// Waits until the network limit allows `bytes` more (paid after sending). Wakes early
// when the limit changes (SetNetworkLimit rings), so a raised limit applies at once,
// and when the senders stop.
void Migration::PayNetwork(uint64_t bytes) {
  uint64_t seen = limit_bell_.generation();
  auto until = Clock::now() + net_bucket_.Reserve(bytes);
  while (senders_run_.load()) {
    auto now = Clock::now();
    if (now >= until) return;
    if (limit_bell_.WaitPast(seen, until - now)) {
      seen = limit_bell_.generation();
      until = Clock::now() + net_bucket_.Reserve(0);
    }
  }
}

}  // namespace migratefs::migration
