// The disk side of a receiving session: ordered operations on one io_uring ring,
// their completions, and the replies they produce.
#include <linux/falloc.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "net/image_identity.h"
#include "net/peer/postcopy_map.h"
#include "net/peer/receive_admission.h"
#include "net/peer/receive_file.h"
#include "net/peer/receive_session_impl.h"

namespace migratefs::net {

namespace asio = boost::asio;
using asio::ip::tcp;
using wire::FrameType;

namespace {

// A write a VM waits for (wire kFlagAwaited: a mirrored write of a synchronous mirror)
// of at most this size is written at once, with pwrite on the buffered fd on this
// thread: a page-cache write is done in a few microseconds, where a direct one waits
// for the device and a buffered one through the ring is handed to an io-wq worker
// (ext4 cannot do it without blocking). Measured on loopback: sync qd1 p50 181 ->
// 134 us (bench/mirror). Other writes (blocks, slices, an asynchronous mirror's
// backlog) keep the direct ring path, which costs the host's CPUs less. Durability is
// the same contract either way: neither a direct nor a buffered write without O_DSYNC
// is durable before the guest's flush, which the source forwards as a sync frame
// (fdatasync here) and the VM's flush waits for.
constexpr uint64_t kAwaitedWriteMax = 64 * 1024;

bool IsAwaitedWrite(const Op* op) {
  return op->kind == Op::Kind::kWrite && (op->flags & wire::kFlagAwaited) != 0 && op->length <= kAwaitedWriteMax;
}

// Whether the rest of a write may go through O_DIRECT: offset, length and memory all
// 4 KiB-aligned (the largest logical block size in common use). Unaligned writes
// and the tail block of an image take the buffered fd; the kernel keeps the two
// coherent (a direct write flushes and drops cached pages of its range first), and
// RangeOrder already keeps overlapping writes apart.
bool CanWriteDirect(const Op* op) {
  if (op->img->direct_fd < 0 || op->direct_refused) return false;
  const uint64_t mask = kPayloadAlignment - 1;
  const auto addr = reinterpret_cast<uintptr_t>(op->buf.get() + op->done);
  return ((op->offset + op->done) & mask) == 0 && ((op->length - op->done) & mask) == 0 && (addr & mask) == 0;
}

}  // namespace

bool ReceiveSession::Impl::UsesRing(const Op* op) {
  if (IsAwaitedWrite(op)) return false;  // RunInline
  switch (op->kind) {
    case Op::Kind::kWrite:
    case Op::Kind::kSync:
    case Op::Kind::kFinish:
      return true;
    case Op::Kind::kZero:
      return !op->zero_fallback;
    default:
      return false;
  }
}

// Starts ready operations in arrival order: ring operations while the ring has room,
// the others (resize, hash, abort) inline.
void ReceiveSession::Impl::Pump() {
  if (pumping_ || !ring_ok_) return;  // Done() below may re-enter through inline operations
  pumping_ = true;
  std::vector<Op*> batch;
  while (!ready_.empty() && !shut_) {
    Op* op = ready_.front();
    if (op->kind == Op::Kind::kWrite && cfg_.test_write_errno) {
      if (const int err = cfg_.test_write_errno(op->img->name, op->offset, op->length); err != 0) {
        ready_.pop_front();
        Done(op, err);
        continue;
      }
    }
    if (UsesRing(op)) {
      if (inflight_ + batch.size() >= cfg_.ring_depth || io_uring_sq_space_left(&ring_) <= batch.size()) break;
      ready_.pop_front();
      batch.push_back(op);
    } else {
      ready_.pop_front();
      RunInline(op);
    }
  }
  if (cfg_.test_reverse_batches) std::reverse(batch.begin(), batch.end());
  for (Op* op : batch) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // room checked above
    const int fd = op->img->fd;
    switch (op->kind) {
      case Op::Kind::kWrite:
        op->direct_issued = CanWriteDirect(op);
        io_uring_prep_write(sqe, op->direct_issued ? op->img->direct_fd : fd, op->buf.get() + op->done,
                            static_cast<unsigned>(op->length - op->done), op->offset + op->done);
        break;
      case Op::Kind::kZero:
        io_uring_prep_fallocate(sqe, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, op->offset, op->length);
        break;
      case Op::Kind::kSync:
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        break;
      case Op::Kind::kFinish:
        io_uring_prep_fsync(sqe, fd, 0);
        break;
      default:
        break;
    }
    io_uring_sqe_set_data(sqe, op);
    ++inflight_;
  }
  if (io_uring_sq_ready(&ring_) > 0) {
    const int r = io_uring_submit(&ring_);
    if (r < 0 && r != -EAGAIN && r != -EBUSY && r != -EINTR) {
      spdlog::error("peer server: io_uring_submit: {}", ErrnoText(-r));
    }
  }
  pumping_ = false;
}

void ReceiveSession::Impl::WaitRing() {
  ev_.async_read_some(asio::buffer(&ev_count_, sizeof ev_count_), [this](const boost::system::error_code& ec, size_t) {
    if (ec) return;
    Reap();
    WaitRing();
  });
}

void ReceiveSession::Impl::Reap() {
  std::vector<std::pair<Op*, int>> done;
  io_uring_cqe* cqe;
  unsigned head, n = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    done.emplace_back(static_cast<Op*>(io_uring_cqe_get_data(cqe)), cqe->res);
    ++n;
  }
  io_uring_cq_advance(&ring_, n);
  inflight_ -= n;
  for (auto [op, res] : done) OnCompletion(op, res);
  Pump();
  MaybeResume();
}

void ReceiveSession::Impl::OnCompletion(Op* op, int res) {
  if (res == -EAGAIN || res == -EINTR) {  // transient: issue it again, first
    ready_.push_front(op);
    return;
  }
  switch (op->kind) {
    case Op::Kind::kWrite:
      if (res == -EINVAL && op->direct_issued) {  // e.g. a 4 KiB-sector device misjudged: go buffered
        op->direct_refused = true;
        ready_.push_front(op);
        return;
      }
      if (res < 0) return Done(op, -res);
      if (res == 0) return Done(op, EIO);
      op->done += static_cast<uint64_t>(res);
      if (op->done < op->length) {
        ready_.push_front(op);  // short write: the rest, before anything else
        return;
      }
      return Done(op, 0);
    case Op::Kind::kZero:
      if (res == -EOPNOTSUPP || res == -EINVAL) {
        op->zero_fallback = true;
        ready_.push_front(op);
        return;
      }
      return Done(op, res < 0 ? -res : 0);
    default:
      return Done(op, res < 0 ? -res : 0);
  }
}

void ReceiveSession::Impl::RunInline(Op* op) {
  Image* img = op->img;
  switch (op->kind) {
    case Op::Kind::kResize:
      return Done(op, ::ftruncate(img->fd, static_cast<off_t>(op->length)) == 0 ? 0 : errno);
    case Op::Kind::kWrite:  // a write a VM waits for (IsAwaitedWrite)
      while (op->done < op->length) {
        const ssize_t n = ::pwrite(img->fd, op->buf.get() + op->done, op->length - op->done,
                                   static_cast<off_t>(op->offset + op->done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Done(op, errno);
        if (n == 0) return Done(op, EIO);
        op->done += static_cast<uint64_t>(n);
      }
      return Done(op, 0);
    case Op::Kind::kZero:
      return Done(op, WriteZeros(img->fd, op->offset, op->length));
    case Op::Kind::kHash:
      return HashOp(op);
    case Op::Kind::kAbort:
      return AbortOp(op);
    case Op::Kind::kPostcopy:
      return PostcopyOp(op);
    default:
      return Done(op, EINVAL);
  }
}

void ReceiveSession::Impl::HashOp(Op* op) {
  // Synchronous: the source asks for a few hundred blocks at a time, holes are
  // skipped with SEEK_DATA, and nothing else of this session can run meanwhile
  // without racing the reads anyway.
  const int err = HashFileBlocks(op->img->fd, op->offset, op->length, op->img->block_size, &hash_reply_);
  Done(op, err);
}

void ReceiveSession::Impl::AbortOp(Op* op) {
  Image* img = op->img;
  // A migration never deletes what it did not create: a copy that existed before it
  // (resumed or overwritten) is kept, marked incomplete.
  const bool created = CreatedByMigration(img->fd);
  const bool keep = (op->flags & wire::kFlagKeepPartial) != 0 || !created;
  if (!created && (op->flags & wire::kFlagKeepPartial) == 0) {
    spdlog::warn("peer server: abort {}: kept (it existed before this migration), marked incomplete", img->name);
  }
  if (keep) {
    if (::fsetxattr(img->fd, kStateXattr, "incomplete", 10, 0) != 0 && errno != ENOTSUP) {
      return Done(op, errno);
    }
    if (cfg_.observer) cfg_.observer->OnReceiveEnded(img->name, img->dev, img->ino, false);
  } else {
    if (cfg_.observer) cfg_.observer->OnReceiveEnded(img->name, img->dev, img->ino, false);
    // Unlink only if the name still refers to our file.
    struct stat st {};
    if (::fstatat(img->parent_fd, img->base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == img->dev &&
        st.st_ino == img->ino) {
      if (::unlinkat(img->parent_fd, img->base.c_str(), 0) != 0) {
        spdlog::warn("peer server: abort {}: unlink: {}", img->name, ErrnoText(errno));
      }
    }
  }
  Done(op, 0);
}

// The hybrid switch-over, after every earlier frame of the image is applied: the size
// the source handed over, the map of the remote blocks (postcopy_map.h), the "postcopy"
// mark (a daemon that restarts now takes the postcopy over from the map, or guards the
// copy instead of showing its holes as data), then the hook that makes it the VM's.
void ReceiveSession::Impl::PostcopyOp(Op* op) {
  Image* img = op->img;
  if (::ftruncate(img->fd, static_cast<off_t>(op->length)) != 0) return Done(op, errno);
  const std::chrono::milliseconds timeout = std::chrono::seconds(op->offset);
  std::unique_ptr<PostcopyMap> map;
  if (!cfg_.state_dir.empty()) {
    auto made = PostcopyMap::Create(cfg_.state_dir, img->dev, img->ino, ReadImageIdentity(img->fd), op->length,
                                    img->block_size, timeout, op->blob);
    if (made.ok()) {
      map = std::move(made.value());
    } else {
      spdlog::warn("postcopy of {}: {}; a restart of this daemon before the copy is whole would guard it with EIO",
                   img->name, made.error().message);
    }
  }
  if (::fsetxattr(img->fd, kStateXattr, "postcopy", 8, 0) != 0 && errno != ENOTSUP) {
    const int err = errno;
    if (map) map->Discard();
    return Done(op, err);
  }
  auto postcopy = std::make_shared<PostcopyImage>(img->name, op->length, img->block_size, op->blob, timeout,
                                                  std::move(map));
  {
    std::lock_guard<std::mutex> lk(mu_);
    postcopy->SetHandedOverBy(source_instance_);
  }
  Status st = cfg_.observer ? cfg_.observer->OnPostcopy(img->name, img->dev, img->ino, postcopy)
                            : MakeError(errc::kWrongState, "no daemon behind this session takes copies over");
  if (!st.ok()) {
    ::fsetxattr(img->fd, kStateXattr, "receiving", 9, 0);
    postcopy->DiscardMap();
    op->error = st.error();
    return Done(op, EINVAL);
  }
  img->postcopy = std::move(postcopy);
  BindFetch(img);
  Done(op, 0);
}

Error ReceiveSession::Impl::DiskError(const Op* op, int err) const {
  const Image* img = op->img;
  std::string what;
  switch (op->kind) {
    case Op::Kind::kWrite:
      what = "write of " + std::to_string(op->length) + " bytes at offset " + std::to_string(op->offset);
      break;
    case Op::Kind::kZero:
      what = "zero range of " + std::to_string(op->length) + " bytes at offset " + std::to_string(op->offset);
      break;
    case Op::Kind::kResize:
      what = "resize to " + std::to_string(op->length);
      break;
    case Op::Kind::kSync:
      what = "fdatasync";
      break;
    case Op::Kind::kHash:
      what = "read for hashing";
      break;
    case Op::Kind::kFinish:
      what = "fsync";
      break;
    case Op::Kind::kAbort:
      what = "abort";
      break;
    case Op::Kind::kPostcopy:
      what = "postcopy switch-over";
      break;
  }
  if (err == ENOSPC || err == EDQUOT) {
    // The root cause, named as such: the source backs off instead of resending.
    const uint64_t free_bytes = FreeBytes(img->fd);
    spdlog::warn("peer server: {} of {}: {}; {} bytes free", what, img->name, ErrnoText(err), free_bytes);
    return MakeError(errc::kTargetFull, what + " of " + img->name + " on the target: " + ErrnoText(err) + "; " +
                                            std::to_string(free_bytes) + " bytes free there");
  }
  return MakeError(errc::kIo, what + " of " + img->name + " on the target: " + ErrnoText(err));
}

// An operation finished (err = 0 or an errno): answer it, release what waited for it.
void ReceiveSession::Impl::Done(Op* op, int err) {
  Image* img = op->img;
  std::vector<OrderEntry*> unblocked;
  img->order.Complete(op, &unblocked);
  for (OrderEntry* e : unblocked) ready_.push_back(static_cast<Op*>(e));
  if (op->kind == Op::Kind::kWrite) {
    buffered_bytes_ -= op->length;
    pool_.Put(std::move(op->buf), op->length);
  }
  if (op->arrival) img->postcopy->EndArrival(op->offset / img->block_size, err == 0);
  live_.erase(op);
  std::unique_ptr<Op> owned(op);
  const uint32_t handle = img->handle;
  if (err != 0) {
    if (op->kind == Op::Kind::kFinish || op->kind == Op::Kind::kAbort) img->closing = false;  // may retry
    SendError(op->request_id, op->error ? *op->error : DiskError(op, err));
  } else if (op->kind == Op::Kind::kHash) {
    SendAck(op->request_id, handle, hash_reply_);
    hash_reply_.clear();
  } else if (op->kind == Op::Kind::kFinish) {
    if (::fremovexattr(img->fd, kStateXattr) != 0 && errno != ENODATA && errno != ENOTSUP) {
      img->closing = false;
      SendError(op->request_id, DiskError(op, errno));
      return;
    }
    if (img->postcopy) img->postcopy->DiscardMap();
    // Complete: from now on it is a copy like any other, never removed by an abort.
    if (::fremovexattr(img->fd, kCreatedXattr) != 0 && errno != ENODATA && errno != ENOTSUP) {
      spdlog::warn("peer server: {}: cannot remove {}: {}", img->name, kCreatedXattr, ErrnoText(errno));
    }
    if (cfg_.observer) cfg_.observer->OnReceiveEnded(img->name, img->dev, img->ino, true);
    CloseImage(img);
    SendAck(op->request_id, handle);
  } else if (op->kind == Op::Kind::kAbort) {
    CloseImage(img);
    SendAck(op->request_id, handle);
  } else {
    SendAck(op->request_id, handle);
  }
}

void ReceiveSession::Impl::CloseImage(Image* img) {
  if (img->postcopy) img->postcopy->Unbind();
  CloseFds(img);  // before the release, as in Cleanup
  if (cfg_.receiving && !img->verify_only) cfg_.receiving->Release(img->dev, img->ino, this);
  images_.erase(img->handle);
}

void ReceiveSession::Impl::CloseFds(Image* img) {
  ::close(img->fd);
  if (img->direct_fd >= 0) ::close(img->direct_fd);
  if (img->parent_fd >= 0) ::close(img->parent_fd);
}

}  // namespace migratefs::net
