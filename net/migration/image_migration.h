// One image of a migration, on the source: its dirty bitmap and the ImageHook that the
// FUSE layer calls for every modification of it.
//
// Phases 1-2: a modification marks its blocks dirty (after the local write returned);
// the sender clears a bit before reading the block (DESIGN.md, "with that order a
// block is never lost, at worst sent twice").
// Phase 3: a modification is forwarded to the peer and the VM's write is acknowledged
// only when the peer applied it. The sender still drains bits left from phase 2.
// Phase 3's parallel path (BeginWrite/FinishWrite): the write is queued for the peer
// before the local pwrite, and the VM is acknowledged when both are done. The stripe
// locks are held from the queueing until the local write returned, so no sender can
// read the block in between (it would read the old bytes and queue them after the
// new ones), and overlapping VM writes reach both copies in the same order. A local
// write that fails (or writes short) re-marks its blocks: the target may hold bytes
// the source does not, and the resend makes them equal again (I2).
// I3 (no stale overwrite): the sender holds the block's stripe lock from its read
// until the frame is queued, and a mirrored write holds it while queueing; frames
// leave in queue order and the target applies overlapping frames in arrival order,
// so an older copy of a block can never be queued after a newer one.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "migratefs/image_hook.h"
#include "net/migration/dirty_bitmap.h"
#include "net/migration/writer_epoch.h"

namespace migratefs::net {
class PeerClient;
}

namespace migratefs::migration {

class Migration;

class ImageMigration : public ImageHook {
 public:
  // Takes ownership of `fd` (read-only, on the backing file).
  ImageMigration(Migration* owner, std::string name, int fd, dev_t dev, ino_t ino, uint64_t block_size);
  ~ImageMigration() override;

  // ImageHook.
  int CheckWriteOpen() override;
  int BeforeModify() override;
  int CheckNamespaceChange() override;
  void AfterWrite(uint64_t off, const void* data, size_t len, Completion done) override;
  void* BeginWrite(uint64_t off, const void* data, size_t len) override;
  void FinishWrite(void* token, ssize_t result, Completion done) override;
  void AfterResize(uint64_t new_size) override;
  void AfterZero(uint64_t off, uint64_t len) override;
  void AfterSync(bool datasync, Completion done) override;

  const std::string& name() const { return name_; }
  // Its identity (net/image_identity.h), set by Migration::StampIdentities.
  const std::string& identity() const { return identity_; }
  void set_identity(std::string id) { identity_ = std::move(id); }
  int fd() const { return fd_; }
  // For the sender's block reads: an O_DIRECT fd on the same file when the backing
  // file system supports it (no page-cache copy, no cache pollution by a whole-image
  // read; the kernel writes back dirty cached pages of the range first, so the read
  // sees every completed write), else fd().
  int block_fd() const { return direct_fd_ >= 0 ? direct_fd_ : fd_; }
  dev_t dev() const { return dev_; }
  ino_t ino() const { return ino_; }
  uint64_t block_size() const { return block_size_; }
  DirtyBitmap& bitmap() { return bitmap_; }
  // Hybrid copy: the data blocks phases 1-2 leave for post-copy (the hottest, chosen
  // by Migration::DeferHottest). Every bit here is also set in bitmap(): the block
  // counts as missing, the scan passes it by until phase 3 releases the set.
  DirtyBitmap& deferred() { return deferred_; }
  uint64_t CurrentSize() const;  // fstat of the backing file
  // The runs of blocks [first, last] that hold data (SEEK_DATA/SEEK_HOLE: extents are
  // walked, not read); a block with any data byte counts whole.
  std::vector<std::pair<uint64_t, uint64_t>> DataRuns() const;
  uint64_t BlocksFor(uint64_t size) const { return (size + block_size_ - 1) / block_size_; }

  // Handle of this image on the migration's current peer connection.
  std::atomic<uint32_t> handle{0};

  // Mirroring on/off; returns once no hook call acts on the old setting.
  void SetMirroring(bool on);
  bool mirroring() const { return mirroring_.load(); }
  // Fence (after finish): modifications fail with EROFS. Returns once no hook call
  // acts on the old setting.
  void SetFenced(bool on);
  bool fenced() const { return fenced_.load(); }

  // Bumped by every resize, under all stripe locks: a sender that sends a block in
  // slices checks it between slices (Migration::SendSlices).
  uint64_t resize_generation() const { return resize_generation_.load(); }

  // Stripe locks over blocks [first, last] (see the I3 note above).
  void LockBlocks(uint64_t first, uint64_t last);
  void UnlockBlocks(uint64_t first, uint64_t last);

 private:
  struct ParallelWrite;
  struct JoinedCompletion;
  void MarkDirty(uint64_t off, uint64_t len);
  // Admits a mirrored write to the backlog and queues it (call with its stripes
  // locked); its ack re-marks the blocks on failure and arrives at `join` if the VM
  // waits for the peer. Returns whether it does.
  bool QueueMirror(net::PeerClient& peer, uint64_t off, const void* data, size_t len, JoinedCompletion* join);
  template <typename Fn>
  void ForEachStripe(uint64_t first, uint64_t last, Fn fn);

  std::string identity_;
  std::atomic<uint64_t> resize_generation_{0};
  static constexpr uint64_t kStripes = 64;

  Migration* owner_;
  const std::string name_;
  const int fd_;
  int direct_fd_ = -1;
  const dev_t dev_;
  const ino_t ino_;
  const uint64_t block_size_;
  DirtyBitmap bitmap_;
  DirtyBitmap deferred_;
  std::atomic<bool> mirroring_{false};
  std::atomic<bool> fenced_{false};
  WriterEpoch epoch_;
  std::array<std::mutex, kStripes> stripes_;
};

}  // namespace migratefs::migration
