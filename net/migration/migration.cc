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

bool AllZero(const char* p, size_t n) {
  if (n == 0) return true;
  return p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0;
}

// Opens an image for reading, strictly beneath SRC (I5): no "..", no symlinks, no
// magic links, whatever the name says.
std::shared_ptr<ImageHook> HookOf(ImageMigration* img) {
  // Non-owning: the migration detaches its hooks before its images die.
  return std::shared_ptr<ImageHook>(std::shared_ptr<ImageHook>{}, img);
}

// O_NONBLOCK: opening a FIFO would otherwise wait for a writer, and with it the
// control request (it is refused as not a regular file right after).
int OpenBeneath(int dirfd, const std::string& name) {
  struct open_how how = {};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return int(::syscall(SYS_openat2, dirfd, name.c_str(), &how, sizeof(how)));
}
}  // namespace

Migration::Migration(std::string id, const StartRequest& req, MigrationContext* ctx)
    : id_(std::move(id)),
      names_(req.images),
      target_(req.target),
      overwrite_(req.overwrite),
      force_(req.force),
      ctx_(ctx),
      phase_(phase::kConnecting),
      net_bucket_(req.network_kbps * 1000),
      disk_bucket_(req.disk_kbps * 1000) {}

Result<std::unique_ptr<Migration>> Migration::Create(std::string id, const StartRequest& req,
                                                     MigrationContext* ctx) {
  if (req.images.empty()) return MakeError(errc::kBadRequest, "start: \"images\" is empty");
  std::unique_ptr<Migration> m(new Migration(std::move(id), req, ctx));
  std::set<std::pair<dev_t, ino_t>> seen;
  for (const std::string& name : req.images) {
    if (Status valid = net::ValidateImageName(name); !valid.ok()) return valid.error();
    int fd = OpenBeneath(ctx->src_dirfd, name);
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
    if (std::strcmp(phase, phase::kPaused) == 0 || std::strcmp(phase, phase::kFailed) == 0) reason_ = detail;
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
    if (IsPermanent(why)) {
      DetachHooks();
      SetPhase(phase::kFailed, "failed", why);
      return;
    }
    // Paused: wait and retry, doubling up to max_backoff; give up after fail_after.
    if (Clock::now() - paused_since_ >= ctx_->fail_after) {
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
  SetPhase(phase::kPaused, "paused", reason);
}

bool Migration::ConnectAndOpen(bool first) {
  net::PeerClientOptions opts;
  opts.target = target_;
  opts.key = ctx_->key;
  // 16 MiB in flight covers 1 Gb/s at 100 ms RTT; more only delays a new limit.
  opts.max_inflight_bytes = 16ull << 20;
  auto client = ctx_->connect(opts);
  if (!client.ok()) {
    Pause(client.error().code + ": " + client.error().message);
    return false;
  }
  std::shared_ptr<net::PeerClient> peer(std::move(client.value()));
  for (auto& img : images_) {
    // resume = true always: after a pause or a source restart the target's partial copy
    // is compared, never thrown away.
    auto opened = peer->OpenImage(img->name(), img->CurrentSize(), uint32_t(ctx_->block_size), true, OriginOf(*img));
    if (!opened.ok()) {
      Pause("opening \"" + img->name() + "\" on the target: " + opened.error().code + ": " +
            opened.error().message);
      return false;
    }
    img->handle.store(opened.value().handle);
    if (first && !force_) {
      if (std::string short_of = RoomOnTarget(*img, opened.value()); !short_of.empty()) {
        Pause(short_of);
        return false;
      }
    }
    if (first) InitialCompare(*img, *peer, opened.value().existed && opened.value().target_size > 0);
  }
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
    // SEEK_DATA/SEEK_HOLE walk the extents without reading them.
    off_t pos = 0;
    while (pos < off_t(size)) {
      off_t data = ::lseek(img.fd(), pos, SEEK_DATA);
      if (data < 0) break;  // ENXIO: no data past pos
      off_t hole = ::lseek(img.fd(), data, SEEK_HOLE);
      if (hole < 0) hole = off_t(size);
      uint64_t first = uint64_t(data) / bs;
      uint64_t last = (uint64_t(hole) - 1) / bs;
      img.bitmap().SetRange(first, last - first + 1);
      pos = hole;
    }
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
  SetPhase(resumed ? phase::kDirty : phase::kBulk, resumed ? "resumed" : "phase");
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
    if (phase == phase::kBulk && passes_.load() >= 1) {
      SetPhase(phase::kDirty, "phase");
      watch = ConvergenceWatch(ctx_->block_size, ctx_->converge_stall, Clock::now());
    } else if (phase == phase::kDirty && passes_.load() >= 1) {
      std::string why =
          watch.Observe(DirtyBlocks(), net_meter_.Rate(), dirty_meter_.Rate(), LinkLive(), Clock::now());
      if (!why.empty()) {
        spdlog::info("migration {}: switching to mirroring ({})", id_, why);
        EnterMirror();
      }
    } else if (phase == phase::kMirror) {
      AnnounceIfCompleted();
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    completed_event_sent_ = false;
  }
  SetPhase(phase::kMirror, "phase");
}

bool Migration::DrainedLocked() {
  if (phase_ != phase::kMirror && phase_ != phase::kFinished) return false;
  return DirtyBlocks() == 0 && data_inflight_.load() == 0;
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

// --- senders --------------------------------------------------------------------

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
  for (auto& t : senders_) t.join();
  senders_.clear();
}

bool Migration::ClaimNext(ImageMigration** img, uint64_t* block) {
  std::lock_guard<std::mutex> lock(scan_mu_);
  for (size_t visited = 0; visited <= images_.size(); visited++) {
    if (scan_image_ >= images_.size()) {
      scan_image_ = 0;
      scan_block_ = 0;
      passes_.fetch_add(1);
    }
    ImageMigration* im = images_[scan_image_].get();
    uint64_t b = im->bitmap().FindNextSet(scan_block_);
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
  while (senders_run_.load()) {
    ImageMigration* img;
    uint64_t block;
    if (!ClaimNext(&img, &block)) {
      std::this_thread::sleep_for(milliseconds(2));
      continue;
    }
    // While mirroring, the VM's writes wait for their acks: keep at most two drain
    // blocks ahead of them on the wire, so a write never queues behind a backlog.
    while (img->mirroring() && data_inflight_.load() >= 2 && senders_run_.load())
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    if (!peer->WaitForWindow(ctx_->block_size, milliseconds(200))) {
      if (!peer->alive()) return;
      continue;  // the bit is still set; it will be claimed again
    }
    if (!SendBlock(*peer, *img, block)) return;
  }
}

// Sends one dirty block. Returns false when this sender should stop.
bool Migration::SendBlock(net::PeerClient& peer, ImageMigration& img, uint64_t block) {
  const uint64_t bs = ctx_->block_size;
  const uint64_t off = block * bs;
  img.LockBlocks(block, block);
  if (!img.bitmap().TestAndClear(block)) {  // clear *before* reading (DESIGN.md phase 2)
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
    img.UnlockBlocks(block, block);
    OnPeerError(MakeError(errc::kIo, "reading \"" + img.name() + "\" on the source: " + std::strerror(err)));
    return false;
  }
  if (n == 0) {  // past EOF: the file shrank; the resize frame carries that
    img.UnlockBlocks(block, block);
    return true;
  }
  bool zero = AllZero(buf, size_t(n));
  uint64_t payload = zero ? 0 : uint64_t(n);
  // The block's bit is re-set if any of its frames fails; it stops counting as in
  // flight when the last frame's ack arrives.
  auto ack = [this, &img, block](const Status& s) {
    if (!s.ok()) {
      img.bitmap().Set(block);
      OnPeerError(s);
    }
    data_inflight_.fetch_sub(1);
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
  if (!zero && rate != 0 && !img.mirroring()) slice = std::clamp<uint64_t>(rate / 50, 16 * 1024, uint64_t(n));
  if (zero) {
    peer.RecycleBuffer(std::move(owned), uint32_t(bs));
    peer.SendZero(img.handle.load(), off, uint64_t(n), ack);
  } else if (slice >= uint64_t(n)) {
    peer.SendData(img.handle.load(), off, std::move(owned), uint32_t(n), [ack, frame_acked, n](const Status& s) {
      frame_acked(uint64_t(n), s);
      ack(s);
    });
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
// when the limit changes, so a raised limit applies at once.
void Migration::PayNetwork(uint64_t bytes) {
  auto until = Clock::now() + net_bucket_.Reserve(bytes);
  uint64_t gen = limit_generation_.load();
  while (senders_run_.load()) {
    auto now = Clock::now();
    if (now >= until) return;
    std::this_thread::sleep_for(std::min<Clock::duration>(until - now, milliseconds(10)));
    if (limit_generation_.load() != gen) {
      gen = limit_generation_.load();
      until = Clock::now() + net_bucket_.Reserve(0);
    }
  }
}

// --- requests --------------------------------------------------------------------

Status Migration::SetNetworkLimit(uint64_t kbps) {
  net_bucket_.SetRate(kbps * 1000);
  limit_generation_.fetch_add(1);
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
  p.blocks_left = p.dirty_blocks + uint64_t(std::max<int64_t>(0, data_inflight_.load()));
  p.bytes_sent = bytes_sent_.load();
  p.bytes_mirrored = bytes_mirrored_.load();
  p.network_kbps = net_meter_.Rate() / 1000.0;
  p.disk_kbps = disk_meter_.Rate() / 1000.0;
  p.dirty_kbps = dirty_meter_.Rate() / 1000.0;
  p.kbps = what == RateKind::kNetwork ? p.network_kbps : p.disk_kbps;
  p.network_limit_kbps = net_bucket_.rate() / 1000;
  p.disk_limit_kbps = disk_bucket_.rate() / 1000;
  // Expression 1 of seed 004 without the hypervisor's share: what is left over what the
  // network gains on the writer. -1 when it gains nothing (no convergence at these rates).
  double gain = (p.network_kbps - p.dirty_kbps) * 1000.0;
  if (p.bytes_left == 0) p.eta_s = 0;
  else if (gain > 0) p.eta_s = double(p.bytes_left) / gain;
  else p.eta_s = -1;
  return p;
}

Status Migration::Finish() {
  std::lock_guard<std::mutex> serial(finish_mu_);
  std::shared_ptr<net::PeerClient> peer;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == phase::kFinished) return OkStatus();  // idempotent
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
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (DirtyBlocks() != 0 || data_inflight_.load() != 0) {
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
    net::PeerClientOptions opts;
    opts.target = target_;
    opts.key = ctx_->key;
    opts.connect_timeout = milliseconds(2000);
    auto c = ctx_->connect(opts);
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

Result<VerifyReport> Migration::Verify() {
  std::lock_guard<std::mutex> serial(finish_mu_);
  std::shared_ptr<net::PeerClient> peer = this->peer();
  if (!peer || !peer->alive())
    return MakeError(errc::kWrongState, "not connected to the target (phase " + Info().progress.phase + ")");
  VerifyReport report;
  const uint64_t bs = ctx_->block_size;
  std::vector<char> buf(bs);
  constexpr uint64_t kBatch = 256;
  for (auto& img : images_) {
    uint64_t blocks = img->BlocksFor(img->CurrentSize());
    for (uint64_t first = 0; first < blocks; first += kBatch) {
      uint64_t count = std::min(kBatch, blocks - first);
      auto remote = peer->HashBlocks(img->handle.load(), first, count);
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
    if (phase_ != phase::kFinished) return MakeError(errc::kWrongState, "only a finished migration can be released");
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
