// The contract between the FUSE layer (fs/) and whatever watches an image's writes
// (the migration engine on a source, the receiver on a target).
//
// The FUSE layer calls an ImageHook for every modification of a backing file that
// has a hook attached: every byte written, every truncate, punch-hole, zero-range
// and allocating fallocate, and every fsync/fdatasync/flush; and before every read
// of it (a target in postcopy must fetch blocks it still lacks). Files with no hook
// pay no more than one atomic load per operation, reads included.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace migratefs {

// A deferred FUSE reply. The FUSE layer fills it in (a function pointer plus the
// request, no heap); the hook calls Complete() exactly once, from any thread, possibly
// before the hook call returns. Calling it later is how a hook delays the VM's
// acknowledgement (disk throttle, phase-3 mirroring) without occupying a FUSE
// worker thread.
class Completion {
 public:
  using Fn = void (*)(void* ctx, uint64_t arg, int err);
  Completion() = default;
  Completion(Fn fn, void* ctx, uint64_t arg) : fn_(fn), ctx_(ctx), arg_(arg) {}
  // err = 0 for success or a positive errno. Idempotent: only the first call replies.
  void Complete(int err) {
    Fn fn = fn_;
    fn_ = nullptr;
    if (fn) fn(ctx_, arg_, err);
  }
  bool pending() const { return fn_ != nullptr; }

 private:
  Fn fn_ = nullptr;
  void* ctx_ = nullptr;
  uint64_t arg_ = 0;
};

class ImageHook {
 public:
  virtual ~ImageHook() = default;

  // open()/create() asking for write access (O_WRONLY, O_RDWR, O_TRUNC) through the
  // mount. Returns 0 or the errno the caller gets: EBUSY on a copy being received
  // (invariant I6), EROFS on a fenced source copy.
  virtual int CheckWriteOpen() = 0;

  // Before any modification (write, truncate, fallocate, punch) through an already
  // open fd. Returns 0 to proceed or an errno (EROFS once fenced). Never blocks.
  virtual int BeforeModify() = 0;

  // Before the FUSE layer reads [off, off+len) of the backing file (a read, or the
  // kernel filling its page cache). 0 to go on, or the errno the reader gets. May
  // block: a target in postcopy waits here until every block of the range is local.
  virtual int BeforeRead(uint64_t off, uint64_t len) { return 0; }
  // After BeforeModify, before a write, punch-hole or zero-range of [off, off+len)
  // (len 0: a truncate to off). May block like BeforeRead: a block the change covers
  // only in part is fetched first, because the rest of its bytes must survive; a block
  // it covers whole (or cuts off, for a truncate) never is. 0 or an errno.
  virtual int BeforeChange(uint64_t off, uint64_t len) { return 0; }
  // True while some of the file's data is not in the backing file yet (postcopy):
  // SEEK_DATA/SEEK_HOLE then answer as if the whole file were data, never a hole
  // where the source has data.
  virtual bool HidesData() const { return false; }

  // unlink/rename of the file through the mount: 0 or an errno (EBUSY while migrating).
  virtual int CheckNamespaceChange() = 0;

  // After a successful local pwrite of `len` bytes at `off`; `data` is valid only
  // during this call. The hook marks blocks dirty, mirrors, throttles, and then calls
  // done.Complete(0); the VM sees its write acknowledged only then. A migration
  // problem (dead peer, full target disk) never completes with an error (I4).
  virtual void AfterWrite(uint64_t off, const void* data, size_t len, Completion done) = 0;

  // Optional fast path for a mirrored write (DRBD protocol C's shape: the local and
  // the remote write in flight at once). Called before the local pwrite of `len` bytes
  // at `off`, with those bytes (valid only during this call). A hook that returns a
  // token has started sending them; the FUSE layer then does the local write and
  // calls FinishWrite with the token exactly once, instead of AfterWrite. nullptr =
  // the hook does not take this path; AfterWrite follows the local write as usual.
  virtual void* BeginWrite(uint64_t off, const void* data, size_t len) { return nullptr; }
  // `result` is the local pwrite's: bytes written, or a negative errno. The hook
  // completes `done` with 0 once both writes are done (the FUSE layer replies
  // `result` bytes), or with -result when the local write failed (the blocks the
  // peer may have applied are then re-marked and resent from the source: invariant I2).
  virtual void FinishWrite(void* token, ssize_t result, Completion done) {}

  // After a successful size change (truncate, ftruncate, size-extending fallocate).
  virtual void AfterResize(uint64_t new_size) = 0;

  // After a successful FALLOC_FL_PUNCH_HOLE or FALLOC_FL_ZERO_RANGE of [off, off+len).
  virtual void AfterZero(uint64_t off, uint64_t len) = 0;

  // After a successful local fsync/fdatasync (and on flush). In phase 3 the engine
  // forwards it to the peer and completes when the peer has synced.
  virtual void AfterSync(bool datasync, Completion done) = 0;
};

// Maps backing files, by (st_dev, st_ino), to the hook watching them. Owned by the
// FUSE layer; the engine and receiver attach and detach hooks.
class HookRegistry {
 public:
  virtual ~HookRegistry() = default;
  // Attach returns only after every modification of that file that started before
  // the call has finished, so every modification that finishes later is reported.
  // Replaces any hook already attached.
  virtual void Attach(dev_t dev, ino_t ino, std::shared_ptr<ImageHook> hook) = 0;
  // Removes `hook` from (dev, ino) if it is the hook attached there, and only then:
  // a caller can never remove a hook someone else attached (a refused start must not
  // detach the running migration or the fence that shares the inode). Returns whether
  // it removed it. After Detach returns true, no call into the detached hook is in
  // progress or will start (completions already handed out may still be called).
  virtual bool Detach(dev_t dev, ino_t ino, const ImageHook* hook) = 0;
  virtual std::shared_ptr<ImageHook> Find(dev_t dev, ino_t ino) const = 0;
  // Makes the mount's idea of the file's size at least the backing file's. With the
  // writeback cache the kernel never takes a size from the daemon for an inode it
  // keeps (one held open), so a file grown behind the mount's back (a received copy)
  // would look cut short through it. Call only while no local writer can modify the
  // file: the kernel's copy of the last page is replaced with the backing bytes.
  // A shrink cannot be shown this way (see fs/README.md). Cached pages are left to
  // the Detach that follows, which drops them. No-op without a mount.
  virtual void RefreshKernelSize(dev_t dev, ino_t ino) {}
};

}  // namespace migratefs
