#include "net/migration/image_migration.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>

#include "net/migration/migration.h"

namespace migratefs::migration {

ImageMigration::ImageMigration(Migration* owner, std::string name, int fd, dev_t dev, ino_t ino,
                               uint64_t block_size)
    : owner_(owner), name_(std::move(name)), fd_(fd), dev_(dev), ino_(ino), block_size_(block_size) {
  // Reopen through the fd itself, so the name cannot have been swapped meanwhile.
  if (block_size_ % 4096 == 0) {
    std::string self = "/proc/self/fd/" + std::to_string(fd_);
    direct_fd_ = ::open(self.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  }
}

ImageMigration::~ImageMigration() {
  if (direct_fd_ >= 0) ::close(direct_fd_);
  ::close(fd_);
}

uint64_t ImageMigration::CurrentSize() const {
  struct stat st;
  return ::fstat(fd_, &st) == 0 ? uint64_t(st.st_size) : 0;
}

std::vector<std::pair<uint64_t, uint64_t>> ImageMigration::DataRuns() const {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  const uint64_t size = CurrentSize();
  off_t pos = 0;
  while (pos < off_t(size)) {
    off_t data = ::lseek(fd_, pos, SEEK_DATA);
    if (data < 0) break;  // ENXIO: no data past pos
    off_t hole = ::lseek(fd_, data, SEEK_HOLE);
    if (hole < 0) hole = off_t(size);
    runs.emplace_back(uint64_t(data) / block_size_, (uint64_t(hole) - 1) / block_size_);
    pos = hole;
  }
  return runs;
}

int ImageMigration::CheckWriteOpen() { return fenced_.load() ? EROFS : 0; }
int ImageMigration::BeforeModify() { return fenced_.load() ? EROFS : 0; }
// Renaming or removing an image under a running migration would leave the target
// with a copy of a file that no longer exists here.
int ImageMigration::CheckNamespaceChange() { return EBUSY; }

void ImageMigration::SetMirroring(bool on) {
  mirroring_.store(on);
  epoch_.WaitForOlderWriters();
}

void ImageMigration::SetFenced(bool on) {
  fenced_.store(on);
  epoch_.WaitForOlderWriters();
}

template <typename Fn>
void ImageMigration::ForEachStripe(uint64_t first, uint64_t last, Fn fn) {
  // Always in increasing stripe order, so two lockers never deadlock.
  if (last - first + 1 >= kStripes) {
    for (uint64_t s = 0; s < kStripes; s++) fn(stripes_[s]);
    return;
  }
  bool seen[kStripes] = {};
  for (uint64_t b = first; b <= last; b++) seen[b % kStripes] = true;
  for (uint64_t s = 0; s < kStripes; s++)
    if (seen[s]) fn(stripes_[s]);
}

void ImageMigration::LockBlocks(uint64_t first, uint64_t last) {
  ForEachStripe(first, last, [](std::mutex& m) { m.lock(); });
}

void ImageMigration::UnlockBlocks(uint64_t first, uint64_t last) {
  ForEachStripe(first, last, [](std::mutex& m) { m.unlock(); });
}

void ImageMigration::MarkDirty(uint64_t off, uint64_t len) {
  if (len == 0) return;
  uint64_t first = off / block_size_;
  uint64_t last = (off + len - 1) / block_size_;
  uint64_t fresh = bitmap_.SetRange(first, last - first + 1);
  if (fresh) {
    owner_->dirty_meter().Add(fresh * block_size_);
    owner_->work_bell().Ring();  // a bit already set was rung for when it was set
  }
}

// Joins the two things a throttled, mirrored write waits for: the peer's ack and the
// disk limit's delay (after the local write). The VM's write is acknowledged when
// both have arrived.
struct ImageMigration::JoinedCompletion {
  std::atomic<int> left{2};
  Completion done;
  int err = 0;  // set before the last arrival
  void Arrive() {
    if (left.fetch_sub(1) == 1) {
      done.Complete(err);
      delete this;
    }
  }
  static void Trampoline(void* ctx, uint64_t, int) { static_cast<JoinedCompletion*>(ctx)->Arrive(); }
};

bool ImageMigration::QueueMirror(net::PeerClient& peer, uint64_t off, const void* data, size_t len,
                                 JoinedCompletion* join) {
  const bool wait_for_peer = owner_->backlog().Admit(len, std::chrono::steady_clock::now());
  peer.SendData(
      handle.load(), off, data, uint32_t(len),
      [this, off, len, join, wait_for_peer](const Status& s) {
        if (!s.ok()) {
          MarkDirty(off, len);
          owner_->OnPeerError(s);
        } else {
          owner_->NoteMirrored(len);
        }
        owner_->backlog().Settled(len, std::chrono::steady_clock::now());
        owner_->MirrorAcked();
        if (wait_for_peer) join->Arrive();
      },
      wait_for_peer ? net::SendPace::kAwaited : net::SendPace::kCoalesced);
  return wait_for_peer;
}

void ImageMigration::AfterWrite(uint64_t off, const void* data, size_t len, Completion done) {
  auto delay = owner_->disk_bucket().Reserve(len);
  auto when = std::chrono::steady_clock::now() + delay;
  owner_->disk_meter().Add(len);
  WriterEpoch::Guard guard(epoch_);
  std::shared_ptr<net::PeerClient> peer;
  if (len > 0 && mirroring_.load()) peer = owner_->peer();
  if (!peer) {
    MarkDirty(off, len);
    owner_->completer().CompleteAt(when, done);
    return;
  }
  // Phase 3: the VM's write is acknowledged once the target applied it, or, with an
  // asynchronous mirror whose backlog is under its high mark, once it is queued for
  // the target (mirror_backlog.h). A failed mirror re-marks the blocks (the sender
  // resends them after the reconnect) and still acknowledges the VM: its write is
  // safe here (I4). So an unshipped backlog turns back into dirty bits when the peer
  // is lost: every queued write's ack fails.
  uint64_t first = off / block_size_;
  uint64_t last = (off + len - 1) / block_size_;
  auto* join = new JoinedCompletion();
  join->done = done;
  LockBlocks(first, last);
  owner_->MirrorSent();
  const bool wait_for_peer = QueueMirror(*peer, off, data, len, join);
  UnlockBlocks(first, last);
  if (!wait_for_peer) join->Arrive();
  owner_->completer().CompleteAt(when, Completion(&JoinedCompletion::Trampoline, join, 0));
}

// What a parallel mirrored write carries from BeginWrite to FinishWrite.
struct ImageMigration::ParallelWrite {
  explicit ParallelWrite(WriterEpoch& e) : guard(e) {}
  WriterEpoch::Guard guard;  // SetMirroring/SetFenced wait until FinishWrite
  uint64_t off = 0, len = 0, first = 0, last = 0;
  JoinedCompletion* join = nullptr;
  bool wait_for_peer = true;
};

void* ImageMigration::BeginWrite(uint64_t off, const void* data, size_t len) {
  if (len == 0 || !mirroring_.load()) return nullptr;
  auto w = std::make_unique<ParallelWrite>(epoch_);
  std::shared_ptr<net::PeerClient> peer;
  if (mirroring_.load()) peer = owner_->peer();  // re-read under the guard
  if (!peer) return nullptr;  // AfterWrite marks the blocks
  w->off = off;
  w->len = len;
  w->first = off / block_size_;
  w->last = (off + len - 1) / block_size_;
  w->join = new JoinedCompletion();
  LockBlocks(w->first, w->last);  // until FinishWrite: see the header
  owner_->MirrorSent();
  // The frame may be acknowledged (and join arrive) before the left count is fixed:
  // count both arrivals first, and drop the peer's if the VM need not wait for it.
  w->wait_for_peer = QueueMirror(*peer, off, data, len, w->join);
  if (!w->wait_for_peer) w->join->Arrive();
  return w.release();
}

void ImageMigration::FinishWrite(void* token, ssize_t result, Completion done) {
  std::unique_ptr<ParallelWrite> w(static_cast<ParallelWrite*>(token));
  // Failed or short: the peer may have applied bytes the source does not hold. Marked
  // while the stripes are still locked, so the resend reads what the source has now.
  if (result < 0 || uint64_t(result) != w->len) MarkDirty(w->off, w->len);
  UnlockBlocks(w->first, w->last);
  JoinedCompletion* join = w->join;
  join->done = done;
  if (result < 0) {
    join->err = int(-result);
    join->Arrive();  // the VM gets its local error without the throttle's delay
    return;
  }
  auto delay = owner_->disk_bucket().Reserve(uint64_t(result));
  owner_->disk_meter().Add(uint64_t(result));
  owner_->completer().CompleteAt(std::chrono::steady_clock::now() + delay,
                                 Completion(&JoinedCompletion::Trampoline, join, 0));
}

void ImageMigration::AfterZero(uint64_t off, uint64_t len) {
  WriterEpoch::Guard guard(epoch_);
  std::shared_ptr<net::PeerClient> peer;
  if (len > 0 && mirroring_.load()) peer = owner_->peer();
  if (!peer) {
    MarkDirty(off, len);
    return;
  }
  uint64_t first = off / block_size_;
  uint64_t last = (off + len - 1) / block_size_;
  LockBlocks(first, last);
  peer->SendZero(handle.load(), off, len, [this, off, len](const Status& s) {
    if (!s.ok()) {
      MarkDirty(off, len);
      owner_->OnPeerError(s);
    }
  });
  UnlockBlocks(first, last);
}

void ImageMigration::AfterResize(uint64_t new_size) {
  WriterEpoch::Guard guard(epoch_);
  // All stripes: a sender that read a block before the truncate must queue it before
  // the resize frame, never after (it would re-extend the target).
  LockBlocks(0, kStripes);
  resize_generation_.fetch_add(1);
  bitmap_.Resize(BlocksFor(new_size));
  // Deferred blocks past the new end are gone with their dirty bits (the set only
  // shrinks: a grown tail is a hole on both sides).
  if (deferred_.size() > BlocksFor(new_size)) deferred_.Resize(BlocksFor(new_size));
  // The partial last block changed (truncate zeroes its tail); resend it.
  if (new_size % block_size_) MarkDirty(new_size - 1, 1);
  if (auto peer = owner_->peer()) {
    peer->SendResize(handle.load(), new_size, [this](const Status& s) {
      if (!s.ok()) owner_->OnPeerError(s);
    });
  }
  UnlockBlocks(0, kStripes);
}

void ImageMigration::AfterSync(bool datasync, Completion done) {
  std::shared_ptr<net::PeerClient> peer;
  if (mirroring_.load()) peer = owner_->peer();
  if (!peer) {
    done.Complete(0);
    return;
  }
  // Forwarded in phase 3 so the guest's flush means durable on both hosts. If the peer
  // is lost meanwhile the flush still succeeds locally (I4); the migration pauses and
  // the unacknowledged blocks are resent after the reconnect.
  auto* holder = new Completion(done);
  peer->SendSync(handle.load(), [holder](const Status&) {
    holder->Complete(0);
    delete holder;
  });
}

}  // namespace migratefs::migration
