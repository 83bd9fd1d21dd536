#include "fs/fs.h"

#include "fs/ops.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace migratefs::fs {

Fs::Fs(const MountOptions& opts, int src_dirfd, double timeout, RestartState* state)
    : opts_(opts),
      timeout_(timeout),
      inodes_(src_dirfd, state, &hooks_),
      handles_(state),
      resends_(state->resend_records(), state->header().starts) {
  Init();
}

Fs::Fs(const MountOptions& opts, double timeout, RestartState* state)
    : opts_(opts),
      timeout_(timeout),
      inodes_(state, &hooks_),
      handles_(state),
      resends_(state->resend_records(), state->header().starts) {
  handles_.Restore(inodes_);
  Init();
}

void Fs::Init() {
  inodes_.set_timeout(timeout_);
  hooks_.SetChangeListener([this](dev_t dev, ino_t ino) { DropKernelCache(dev, ino); });
  hooks_.SetSizeRefresher([this](dev_t dev, ino_t ino) { StoreKernelSize(dev, ino); });
}

void Fs::NotifyWhenServing(std::function<void()> notify) {
  {
    std::lock_guard<std::mutex> lock(held_mu_);
    if (!serving_) {
      held_.push_back(std::move(notify));
      return;
    }
  }
  notify();
}

void Fs::ServeHeldNotifications() {
  std::vector<std::function<void()>> held;
  {
    std::lock_guard<std::mutex> lock(held_mu_);
    serving_ = true;
    held.swap(held_);
  }
  for (auto& notify : held) notify();
}

void Fs::DropKernelCache(dev_t dev, ino_t ino) {
  if (se_ == nullptr) return;
  NotifyWhenServing([this, dev, ino] {
    fuse_ino_t id, parent;
    std::string name;
    if (!inodes_.Known(dev, ino, &id, &parent, &name)) return;
    // Never called from a request handler, so no request holds the locks the kernel
    // takes here. Stale ids (forgotten meanwhile) are answered ENOENT by the kernel.
    fuse_lowlevel_notify_inval_inode(se_, id, 0, 0);
    if (parent != 0) fuse_lowlevel_notify_inval_entry(se_, parent, name.data(), name.size());
  });
}

void Fs::StoreKernelSize(dev_t dev, ino_t ino) {
  if (se_ == nullptr) return;
  NotifyWhenServing([this, dev, ino] { StoreKernelSizeNow(dev, ino); });
}

void Fs::StoreKernelSizeNow(dev_t dev, ino_t ino) {
  fuse_ino_t id;
  const int fd = inodes_.OpenKnown(dev, ino, O_RDONLY | O_CLOEXEC | O_NONBLOCK, &id);
  if (fd < 0) return;  // the kernel holds no inode: its next lookup reads the size
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    const off_t page = ::sysconf(_SC_PAGESIZE);
    const off_t start = (st.st_size - 1) / page * page;
    std::vector<char> tail(static_cast<size_t>(st.st_size - start));
    if (::pread(fd, tail.data(), tail.size(), start) == static_cast<ssize_t>(tail.size())) {
      fuse_bufvec buf = FUSE_BUFVEC_INIT(tail.size());
      buf.buf[0].mem = tail.data();
      fuse_lowlevel_notify_store(se_, id, start, &buf, FUSE_BUF_NO_SPLICE);
    }
  }
  ::close(fd);
}

void Fs::WriteBackKernelPages(fuse_ino_t id, off_t from) {
  if (se_ != nullptr) fuse_lowlevel_notify_inval_inode(se_, id, from, 0);
}

const fuse_lowlevel_ops& LowLevelOps() {
  // POSIX byte-range locks (getlk/setlk) are deliberately absent: without them the
  // kernel keeps fcntl/OFD locks on the mount itself, with correct per-owner
  // semantics. Forwarding them would make the daemon the owner of every lock (one
  // process holds all backing fds), merging unrelated callers' locks. flock locks
  // belong to an open file description, which maps 1:1 onto our per-open backing
  // fd, so those are forwarded and are visible to users of SRC too.
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o{};
    o.init = OpInit;
    o.destroy = OpDestroy;
    o.lookup = OpLookup;
    o.forget = OpForget;
    o.forget_multi = OpForgetMulti;
    o.getattr = OpGetattr;
    o.setattr = OpSetattr;
    o.readlink = OpReadlink;
    o.mknod = OpMknod;
    o.mkdir = OpMkdir;
    o.symlink = OpSymlink;
    o.unlink = OpUnlink;
    o.rmdir = OpRmdir;
    o.rename = OpRename;
    o.link = OpLink;
    o.open = OpOpen;
    o.create = OpCreate;
    o.read = OpRead;
    o.write_buf = OpWriteBuf;
    o.flush = OpFlush;
    o.release = OpRelease;
    o.fsync = OpFsync;
    o.opendir = OpOpendir;
    o.readdir = OpReaddir;
    o.readdirplus = OpReaddirplus;
    o.releasedir = OpReleasedir;
    o.fsyncdir = OpFsyncdir;
    o.statfs = OpStatfs;
    o.setxattr = OpSetxattr;
    o.getxattr = OpGetxattr;
    o.listxattr = OpListxattr;
    o.removexattr = OpRemovexattr;
    o.flock = OpFlock;
    o.fallocate = OpFallocate;
    o.copy_file_range = OpCopyFileRange;
    o.lseek = OpLseek;
    return o;
  }();
  return ops;
}

}  // namespace migratefs::fs
