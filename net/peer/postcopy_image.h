// The target's copy of an image in postcopy (hybrid copy, issue 10; seed 002): the VM
// already runs on it, and some of its blocks are still only on the source.
//
// Who calls what:
// - The receiving session creates it when the source hands the copy over (wire
//   kPostcopy), and the daemon attaches it as the copy's ImageHook (ReceiveObserver::
//   OnPostcopy). From then on it is the one writer's copy (I6 flipped): local opens
//   for writing are allowed; rename and unlink stay refused until every block is here.
// - The FUSE layer asks it before every read and every change of the copy. A read of a
//   remote block waits until the block has arrived: it asks the source for it at once
//   (a Fetch frame, ahead of the background push), then sleeps. A change that covers a
//   remote block in part fetches it first; one that covers it whole claims it (the VM's
//   bytes win; the source's copy of that block, when it comes, is dropped).
// - The receiving session reports every block frame of the source: BeginArrival says
//   whether to write it (no: the VM overwrote or cut off that block here), and
//   EndArrival that it is written (the block is local; its waiters wake).
//
// What done means: AllLocal() -- every block is here; the source then finishes the copy
// (FinishImage), the map is discarded and the hook is detached.
//
// Persistence (postcopy_map.h): with a map, every block that becomes local is marked
// local in it under the same lock, before the VM's bytes can reach the block (a claim,
// in BeforeChange) or once the source's bytes are written (EndArrival, before the
// session acknowledges the block). So a daemon restarted from the map (Restore) never
// takes a block the VM has written for remote, and a resent block cannot overwrite it.
//
// Failure: while no block arrives for `timeout` (the source died, the link is cut and
// stays cut), reads of remote blocks keep waiting: the VM stalls, it never reads zeros
// or stale bytes. After that they fail with EIO, the copy shows "failed" with the
// reason, and blocks that still arrive later (a source that comes back) are accepted.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "migratefs/image_hook.h"
#include "migratefs/migration_service.h"
#include "net/latency_window.h"
#include "net/peer/postcopy_map.h"

namespace migratefs::net {

class PostcopyImage : public ImageHook {
 public:
  using Clock = std::chrono::steady_clock;
  // Asks the source for blocks [first, first+count). Must not block.
  using FetchFn = std::function<void(uint64_t first, uint64_t count)>;

  // `remote`: the PostcopyPayload bitmap (wire.h) of a `size`-byte image.
  // `map` (may be null: nothing survives a restart) holds the same remote blocks.
  PostcopyImage(std::string name, uint64_t size, uint32_t block_size, const std::string& remote,
                std::chrono::milliseconds timeout, std::unique_ptr<PostcopyMap> map = nullptr);
  // The postcopy an earlier daemon left in `map`, taken over as it was.
  static std::shared_ptr<PostcopyImage> Restore(std::string name, std::unique_ptr<PostcopyMap> map);

  // ImageHook. An open for writing or a change through the mount means the VM runs
  // here: from then on the copy is never given back (GiveBack).
  int CheckWriteOpen() override;
  int BeforeModify() override { return 0; }
  int CheckNamespaceChange() override { return AllLocal() ? 0 : EBUSY; }
  int BeforeRead(uint64_t off, uint64_t len) override;
  int BeforeChange(uint64_t off, uint64_t len) override;

  // A hand-over that failed half way (a multi-image finish whose next image could not be
  // handed over): the source daemon `instance` that handed this copy over, unfenced
  // again, reopens it to go on with the pre-copy. True (and from now on every open for
  // writing and change fails with EBUSY, until the caller puts the refusing hook back)
  // only if that source handed it over (HandedOverBy) and nothing here has opened the
  // copy for writing or changed it: then it holds only the source's bytes. A copy
  // restored from a map (a restarted daemon) is never given back.
  bool GiveBack(const std::string& instance);
  void SetHandedOverBy(std::string instance) { handed_over_by_ = std::move(instance); }
  bool HidesData() const override { return !AllLocal(); }
  void AfterWrite(uint64_t, const void*, size_t, Completion done) override { done.Complete(0); }
  void AfterResize(uint64_t) override {}
  void AfterZero(uint64_t, uint64_t) override {}
  void AfterSync(bool, Completion done) override { done.Complete(0); }

  // The connection that fetches go out on; every block a reader waits for is asked
  // again on it. Unbind (the connection ended): readers keep waiting, up to the timeout.
  void Bind(FetchFn fetch);
  void Unbind();

  // A block frame of the source for `block`: true = write it now (EndArrival follows),
  // false = drop it (acknowledge it unwritten).
  bool BeginArrival(uint64_t block);
  // The write of BeginArrival's block finished; ok = false: it failed (the block is
  // remote again, the source resends it after the error).
  void EndArrival(uint64_t block, bool ok);

  bool AllLocal() const { return remote_.load(std::memory_order_acquire) == 0; }
  // The postcopy ended (every block local, the copy finished): the map file goes.
  void DiscardMap();
  // The runs [first, first+count) of blocks not local yet (what a reattaching source
  // is told it still has to send).
  std::vector<std::pair<uint64_t, uint64_t>> RemoteRuns() const;
  uint64_t blocks() const { return uint64_t(state_.size()); }
  uint32_t block_size() const { return block_size_; }
  const std::string& name() const { return name_; }
  IncomingInfo Info() const;

  // Test seam: what "now" is for the timeout and the latency window (the hand-over
  // counts as now). Before any other call.
  void SetClockForTest(std::function<Clock::time_point()> now) {
    now_ = std::move(now);
    progress_ = now_();
  }

 private:
  enum State : uint8_t { kLocal = 0, kRemote = 1, kArriving = 2 };
  // Waits until blocks [first, last] are local, fetching those still remote; remote
  // blocks in [whole_begin, whole_end) are claimed instead (a change covers them
  // whole). Returns 0 or EIO.
  int AwaitLocal(uint64_t first, uint64_t last, uint64_t whole_begin, uint64_t whole_end);
  void FailIfStalledLocked(Clock::time_point now);
  void MarkLocalLocked(uint64_t block);

  const std::string name_;
  const uint64_t size_;  // at the hand-over
  const uint32_t block_size_;
  const std::chrono::milliseconds timeout_;
  std::function<Clock::time_point()> now_ = [] { return Clock::now(); };

  mutable std::mutex mu_;
  std::condition_variable arrived_;
  std::vector<uint8_t> state_;    // State per block
  std::vector<uint8_t> awaited_;  // a reader or writer waits for the block
  std::atomic<uint64_t> remote_{0};  // blocks not kLocal
  FetchFn fetch_;
  std::unique_ptr<PostcopyMap> map_;
  Clock::time_point progress_;    // last arrival, or the hand-over / a new connection
  std::string failed_;            // why reads of remote blocks fail ("" = they wait)
  std::string handed_over_by_;    // the source daemon's instance id ("" = unknown)
  bool used_ = false;             // opened for writing or changed through the mount
  bool given_back_ = false;
  uint64_t bytes_pulled_ = 0, bytes_fetched_ = 0, fetches_ = 0;
  LatencyWindow waits_;  // how long readers and writers waited, over the last 10 s
};

}  // namespace migratefs::net
