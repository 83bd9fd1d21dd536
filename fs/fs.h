// The file system object shared by all FUSE operations (fuse_req_userdata), and the
// small helpers every op_*.cc uses.
#pragma once

#include <fuse_lowlevel.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "fs/handle_table.h"
#include "fs/hook_registry.h"
#include "fs/inode.h"
#include "fs/resend_log.h"
#include "fs/restart_state.h"
#include "migratefs/mount_options.h"

namespace migratefs::fs {

class Fs {
 public:
  // A fresh file system: takes ownership of src_dirfd (O_PATH | O_DIRECTORY on SRC,
  // opened before mount); its inodes and handles are recorded in `state` (not owned,
  // outlives the Fs).
  Fs(const MountOptions& opts, int src_dirfd, double timeout, RestartState* state);
  // The file system a previous worker left in `state`: every inode and handle the
  // kernel holds is back under the same id.
  Fs(const MountOptions& opts, double timeout, RestartState* state);

  static Fs& Of(fuse_req_t req) { return *static_cast<Fs*>(fuse_req_userdata(req)); }

  const MountOptions& options() const { return opts_; }
  InodeTable& inodes() { return inodes_; }
  HandleTable& handles() { return handles_; }
  HookRegistryImpl& hooks() { return hooks_; }
  ResendLog& resends() { return resends_; }
  double timeout() const { return timeout_; }
  // True when the kernel granted the writeback cache at INIT.
  bool writeback() const { return writeback_; }
  void set_writeback(bool on) { writeback_ = on; }
  // For kernel notifications; set by the Session once the libfuse session exists.
  void set_session(fuse_session* se) { se_ = se; }
  // Makes the kernel forget what it cached about backing file (dev, ino): its pages,
  // its attributes, and (if nothing holds it: no open file, and no asynchronous
  // RELEASE the kernel has not yet had answered, which pins the inode too) the inode
  // itself, so the next lookup reads size and contents afresh. Growth while the
  // inode is pinned needs StoreKernelSize first. Needed because with the writeback cache
  // the kernel never takes a file size from the daemon while it caches the inode,
  // and files that change in SRC without passing the mount (the migration receiver
  // writes there) would keep a stale size. Runs on every hook Attach/Detach.
  void DropKernelCache(dev_t dev, ino_t ino);
  // HookRegistry::RefreshKernelSize: stores the backing file's last page (from its
  // start to EOF) into the kernel's cache with FUSE_NOTIFY_STORE, which grows the
  // kernel's size to the end of the stored range: the one way to move it while the
  // kernel keeps the inode. Stale pages are dropped by the Detach that follows.
  void StoreKernelSize(dev_t dev, ino_t ino);
  // Makes the kernel write back its dirty pages of node `id` from `from` to EOF, and
  // waits until they have reached us (FUSE_NOTIFY_INVAL_INODE: the kernel launders
  // each dirty page, sending a WRITE that another worker serves, before dropping it).
  // Clean cached pages of that range are dropped too. May be called from a request
  // handler only if that request holds no page lock of the file (lseek holds the
  // inode lock only, which writeback does not take).
  void WriteBackKernelPages(fuse_ino_t id, off_t from);

  // Until the session serves, the two notifications above are held, in order, and
  // sent by ServeHeldNotifications, which Session::Loop calls as its loop starts. Why:
  // a new worker attaches its hooks (StartServices) before it serves, while requests
  // the dead worker took are back on the kernel's queue; an inval of a file waits for
  // the page locks a READ in flight holds, and that READ waits for this worker's loop,
  // so sending it at once would deadlock the worker and the VM's I/O with it. Holding
  // is safe: what the kernel cached was made under the same hooks by the dead worker.
  void ServeHeldNotifications();

  // Ask for SPLICE_READ at INIT (large WRITE payloads arrive in a pipe).
  bool splice_read() const { return splice_read_; }
  void set_splice_read(bool on) { splice_read_ = on; }
  // WRITEs whose payload arrived in a pipe, the largest WRITE and the largest READ
  // asked for (op_write.cc, op_read.cc): what the kernel and libfuse negotiated, as
  // the daemon sees it. Small WRITEs cost one load here, not a shared increment.
  uint64_t piped_writes() const { return piped_writes_.load(std::memory_order_relaxed); }
  size_t largest_write() const { return largest_write_.load(std::memory_order_relaxed); }
  size_t largest_read() const { return largest_read_.load(std::memory_order_relaxed); }
  void CountWrite(bool piped, size_t len) {
    if (piped) piped_writes_.fetch_add(1, std::memory_order_relaxed);
    RaiseTo(largest_write_, len);
  }
  void CountRead(size_t len) { RaiseTo(largest_read_, len); }
  // Set once INIT has been answered (read by the read-ahead tuner).
  bool initialized() const { return initialized_.load(); }
  void set_initialized() { initialized_.store(true); }

 private:
  void Init();
  void StoreKernelSizeNow(dev_t dev, ino_t ino);
  // Runs `notify` now, or (before ServeHeldNotifications) queues it.
  void NotifyWhenServing(std::function<void()> notify);

  MountOptions opts_;
  double timeout_;
  HookRegistryImpl hooks_;
  InodeTable inodes_;
  HandleTable handles_;  // after inodes_: its Files refer to Inodes
  ResendLog resends_;
  bool writeback_ = false;
  std::atomic<bool> initialized_{false};
  bool splice_read_ = false;
  std::atomic<uint64_t> piped_writes_{0};
  std::atomic<size_t> largest_write_{0};
  std::atomic<size_t> largest_read_{0};
  // Almost always one relaxed load: the maximum is reached within the first requests.
  static void RaiseTo(std::atomic<size_t>& max, size_t v) {
    size_t cur = max.load(std::memory_order_relaxed);
    while (v > cur && !max.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
  }
  fuse_session* se_ = nullptr;
  std::mutex held_mu_;
  bool serving_ = false;
  std::vector<std::function<void()>> held_;
};

// The operations table handed to fuse_session_new().
const fuse_lowlevel_ops& LowLevelOps();

inline Inode& InodeOf(fuse_req_t req, fuse_ino_t ino) { return Fs::Of(req).inodes().Get(ino); }
inline File& FileOf(fuse_req_t req, fuse_file_info* fi) { return Fs::Of(req).handles().FileAt(fi->fh); }

// Replies with errno `err` (0 = success for ops whose success reply is empty).
inline void ReplyErr(fuse_req_t req, int err) { fuse_reply_err(req, err); }

}  // namespace migratefs::fs
