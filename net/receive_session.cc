#include "net/receive_session.h"

#include <fcntl.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <unordered_set>
#include <vector>

#include "net/buffer_pool.h"
#include "net/frame.h"
#include "net/handshake.h"
#include "net/image_name.h"
#include "net/log_throttle.h"
#include "net/range_order.h"
#include "net/receive_admission.h"
#include "net/receive_file.h"

namespace migratefs::net {

namespace asio = boost::asio;
using asio::ip::tcp;
using wire::FrameType;

namespace {

constexpr size_t kReadChunk = 256u << 10;
constexpr size_t kLargeFrame = 64u << 10;  // payloads from here on are read in place

struct Image {
  uint32_t handle = 0;
  std::string name;
  int fd = -1;
  int direct_fd = -1;  // O_DIRECT twin of fd for aligned writes, or -1
  int parent_fd = -1;  // O_PATH directory holding the file, for the unlink on abort
  std::string base;
  dev_t dev = 0;
  ino_t ino = 0;
  uint32_t block_size = 0;
  bool closing = false;  // finish/abort accepted: no further requests
  RangeOrder order;
};

struct Op : OrderEntry {
  enum class Kind { kWrite, kZero, kResize, kSync, kHash, kFinish, kAbort };
  Kind kind = Kind::kWrite;
  Image* img = nullptr;
  uint64_t request_id = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint16_t flags = 0;
  PayloadBuffer buf;               // data payload (4 KiB-aligned)
  uint64_t done = 0;               // bytes written so far (short writes resume)
  bool zero_fallback = false;      // fs cannot punch holes: write zeros instead
  bool direct_issued = false;      // the last submission went through direct_fd
  bool direct_refused = false;     // direct_fd said EINVAL: use the buffered fd
};

// Whether the rest of a write may go through O_DIRECT: offset, length and memory all
// 4 KiB-aligned (the largest logical block size in common use). Mirrored VM writes
// and the tail block of an image usually are not, and take the buffered fd; the
// kernel keeps the two coherent (a direct write flushes and drops cached pages of
// its range first), and RangeOrder already keeps overlapping writes apart.
bool CanWriteDirect(const Op* op) {
  if (op->img->direct_fd < 0 || op->direct_refused) return false;
  const uint64_t mask = kPayloadAlignment - 1;
  const auto addr = reinterpret_cast<uintptr_t>(op->buf.get() + op->done);
  return ((op->offset + op->done) & mask) == 0 && ((op->length - op->done) & mask) == 0 && (addr & mask) == 0;
}

}  // namespace

class ReceiveSession::Impl final : public ImageHolder {
 public:
  Impl(int fd, const SessionConfig& cfg, HandshakeMonitor* monitor)
      : fd_(fd), cfg_(cfg), monitor_(monitor), sock_(io_), ev_(io_), linger_(io_) {}

  ~Impl() {
    if (fd_ >= 0 && !sock_.is_open()) ::close(fd_);
  }

  void Run() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stop_requested_) return;
      phase_ = Phase::kHandshake;
    }
    TunePeerSocket(fd_);
    auto hs = RunServerHandshake(fd_, cfg_.key, std::chrono::steady_clock::now() + cfg_.handshake_timeout, monitor_);
    if (!hs.ok()) {
      // Under a flood of strangers this is thousands a second: one line per 10 s.
      static LogThrottle refused_log;
      if (const uint64_t n = refused_log.Note(); n > 0) {
        spdlog::warn("peer server: handshake refused: {}: {}{}", hs.error().code, hs.error().message,
                     n > 1 ? " (and " + std::to_string(n - 1) + " more since the last such line)" : "");
      }
      return;
    }
    if (int r = io_uring_queue_init(cfg_.ring_depth, &ring_, 0); r < 0) {
      spdlog::error("peer server: io_uring_queue_init: {}", ErrnoText(-r));
      return;
    }
    ring_ok_ = true;
    const int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0 || io_uring_register_eventfd(&ring_, efd) < 0) {
      spdlog::error("peer server: eventfd for io_uring: {}", ErrnoText(errno));
      if (efd >= 0) ::close(efd);
      return;
    }
    ev_.assign(efd);
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &sl);
    boost::system::error_code ec;
    sock_.assign(ss.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd_, ec);
    if (ec) return;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stop_requested_) return;
      phase_ = Phase::kRunning;
    }
    WaitRing();
    ReadMore();
    io_.run();
  }

  std::chrono::milliseconds Idle() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()) -
           std::chrono::milliseconds(last_rx_ms_.load());
  }

  std::string SourceInstance() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return source_instance_;
  }

  void Stop() override {
    std::lock_guard<std::mutex> lk(mu_);
    stop_requested_ = true;
    if (phase_ == Phase::kHandshake) {
      ::shutdown(fd_, SHUT_RDWR);  // wakes the blocking handshake
    } else if (phase_ == Phase::kRunning) {
      asio::post(io_, [this] { Shutdown(); });
    }
  }

  // Runs on the session thread after Run() returned: waits for the disk, then frees.
  void Cleanup() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      phase_ = Phase::kDone;
    }
    if (ring_ok_) {
      while (inflight_ > 0) {
        io_uring_cqe* cqe = nullptr;
        if (io_uring_submit_and_wait(&ring_, 1) < 0 && io_uring_wait_cqe(&ring_, &cqe) < 0) break;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&ring_, head, cqe) { ++n; }
        io_uring_cq_advance(&ring_, n);
        inflight_ -= std::min<unsigned>(n, inflight_);
      }
      io_uring_queue_exit(&ring_);
      ring_ok_ = false;
    }
    for (Op* op : live_) delete op;
    live_.clear();
    for (auto& [h, img] : images_) {
      // Partial copy stays marked "receiving" for a resume; no OnReceiveEnded.
      // Descriptors first: whoever takes the image over next checks that no one else
      // has it open for writing (receive_admission.h).
      CloseFds(img.get());
      if (cfg_.receiving) cfg_.receiving->Release(img->dev, img->ino, this);
    }
    images_.clear();
    boost::system::error_code ec;
    ev_.close(ec);
    if (sock_.is_open()) {
      sock_.close(ec);
    } else if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = -1;
  }

 private:
  enum class Phase { kIdle, kHandshake, kRunning, kDone };

  // ---------------------------------------------------------------- socket side

  void NoteRx() {
    last_rx_ms_.store(std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count());
  }

  bool Overloaded() const {
    return buffered_bytes_ > cfg_.max_buffered_bytes || live_.size() > cfg_.max_pending_ops;
  }

  void ReadMore() {
    if (closing_ || reading_) return;
    reading_ = true;
    // While large data frames stream in, read just up to the next header, so the
    // payload that follows lands in its own buffer without a copy; otherwise read big
    // chunks so that many small frames cost one system call.
    const size_t want = large_frames_ && reader_.buffered() < wire::kHeaderSize
                            ? wire::kHeaderSize - reader_.buffered()
                            : kReadChunk;
    sock_.async_read_some(asio::buffer(rbuf_.get(), want), [this](const boost::system::error_code& ec, size_t n) {
      reading_ = false;
      if (ec) {
        if (ec != asio::error::eof && ec != asio::error::operation_aborted) {
          spdlog::info("peer server: session ended: {}", ec.message());
        }
        Shutdown();
        return;
      }
      NoteRx();
      reader_.Append(rbuf_.get(), n);
      Parse();
    });
  }

  // Consumes whole frames from the buffer; reads large payloads straight into their
  // own buffer. Stops (paused_) while too much is queued for the disk.
  void Parse() {
    while (!closing_) {
      if (Overloaded()) {
        paused_ = true;
        Pump();
        return;
      }
      auto h = reader_.NextHeader(cur_raw_);
      if (!h.ok()) {
        ProtocolError(h.error());
        return;
      }
      if (!h.value()) break;
      cur_hdr_ = *h.value();
      const uint32_t len = cur_hdr_.payload_len;
      large_frames_ = len >= kLargeFrame;
      // len <= MaxPayloadFor(type): validated by NextHeader before this allocation.
      cur_buf_ = len ? pool_.Get(len) : nullptr;
      const size_t got = reader_.Take(cur_buf_.get(), len);
      if (got < len) {
        Pump();  // start what the frames so far made ready while the payload arrives
        reading_ = true;
        asio::async_read(sock_, asio::buffer(cur_buf_.get() + got, len - got),
                         [this](const boost::system::error_code& ec, size_t) {
                           reading_ = false;
                           if (ec) {
                             Shutdown();
                             return;
                           }
                           NoteRx();
                           if (OnFrame()) Parse();
                         });
        return;
      }
      if (!OnFrame()) return;
    }
    Pump();  // one io_uring_submit for every frame of this read
    ReadMore();
  }

  // Returns false after a protocol error.
  bool OnFrame() {
    Status st = VerifyChecksum(cur_raw_, cur_hdr_, cur_buf_.get());
    if (!st.ok()) {
      ProtocolError(st.error());
      return false;
    }
    HandleFrame(cur_hdr_, std::move(cur_buf_));
    return !closing_;
  }

  void MaybeResume() {
    if (paused_ && !closing_ && !Overloaded()) {
      paused_ = false;
      Parse();
    }
  }

  void Send(std::string frame) {
    out_.push_back(std::move(frame));
    if (!writing_) WriteMore();
  }

  void SendAck(uint64_t request_id, uint32_t handle, std::string_view payload = {}) {
    FrameHeader h;
    h.type = FrameType::kAck;
    h.request_id = request_id;
    h.handle = handle;
    Send(EncodeFrame(h, payload));
  }

  void SendError(uint64_t request_id, const Error& e) {
    FrameHeader h;
    h.type = FrameType::kError;
    h.request_id = request_id;
    Send(EncodeFrame(h, EncodeErrorPayload(e)));
  }

  void WriteMore() {
    if (out_.empty() || !sock_.is_open()) {
      writing_ = false;
      if (closing_) Shutdown();
      return;
    }
    writing_ = true;
    wbatch_.swap(out_);
    out_.clear();
    wbufs_.clear();
    for (const std::string& s : wbatch_) wbufs_.emplace_back(s.data(), s.size());
    asio::async_write(sock_, wbufs_, [this](const boost::system::error_code& ec, size_t) {
      wbatch_.clear();
      if (ec) {
        writing_ = false;
        Shutdown();
        return;
      }
      WriteMore();
    });
  }

  // The peer broke the protocol: tell it why (request id 0) and end the session.
  void ProtocolError(const Error& e) {
    spdlog::warn("peer server: closing session: {}: {}", e.code, e.message);
    closing_ = true;
    SendError(0, e);
    linger_.expires_after(std::chrono::seconds(2));
    linger_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) Shutdown();
    });
  }

  void Shutdown() {
    if (shut_) return;
    shut_ = true;
    closing_ = true;
    boost::system::error_code ec;
    sock_.shutdown(tcp::socket::shutdown_both, ec);
    sock_.cancel(ec);
    ev_.cancel(ec);
    linger_.cancel();
    io_.stop();
  }

  // ---------------------------------------------------------------- requests

  void HandleFrame(const FrameHeader& h, PayloadBuffer payload) {
    switch (h.type) {
      case FrameType::kOpenImage:
        HandleOpen(h, payload.get());
        return;
      case FrameType::kData:
      case FrameType::kZero:
      case FrameType::kResize:
      case FrameType::kSync:
      case FrameType::kHashRequest:
      case FrameType::kFinishImage:
      case FrameType::kAbortImage:
        HandleImageOp(h, std::move(payload));
        return;
      default:
        ProtocolError(MakeError(errc::kBadRequest,
                                std::string("protocol: unexpected ") + FrameTypeName(h.type) + " frame from a client"));
    }
  }

  void HandleImageOp(const FrameHeader& h, PayloadBuffer payload) {
    auto it = images_.find(h.handle);
    if (it == images_.end()) {
      SendError(h.request_id, MakeError(errc::kInvalidArgument, "unknown image handle " + std::to_string(h.handle)));
      return;
    }
    Image* img = it->second.get();
    if (img->closing) {
      SendError(h.request_id, MakeError(errc::kWrongState, "image " + img->name + " is being finished or aborted"));
      return;
    }
    const uint16_t allowed_flags = h.type == FrameType::kAbortImage ? wire::kFlagKeepPartial : 0;
    if (h.flags & ~allowed_flags) {
      SendError(h.request_id, MakeError(errc::kBadRequest, std::string("flags not valid for ") + FrameTypeName(h.type)));
      return;
    }
    auto op = std::make_unique<Op>();
    op->img = img;
    op->request_id = h.request_id;
    op->offset = h.offset;
    op->length = h.length;
    op->flags = h.flags;
    auto bad = [&](std::string msg) {
      SendError(h.request_id, MakeError(errc::kInvalidArgument, std::string(FrameTypeName(h.type)) + " on " +
                                                                    img->name + ": " + msg));
    };
    bool ready = false;
    switch (h.type) {
      case FrameType::kData:
        if (h.length == 0 || h.length != h.payload_len) return bad("payload length does not match length");
        if (h.offset > wire::kMaxImageSize - h.length) return bad("range beyond the image size limit");
        op->kind = Op::Kind::kWrite;
        op->buf = std::move(payload);
        buffered_bytes_ += h.length;
        ready = img->order.AddRange(op.get(), h.offset, h.offset + h.length);
        break;
      case FrameType::kZero:
        if (h.offset > wire::kMaxImageSize || h.length > wire::kMaxImageSize - h.offset) {
          return bad("range beyond the image size limit");
        }
        if (h.length == 0) {
          SendAck(h.request_id, h.handle);
          return;
        }
        op->kind = Op::Kind::kZero;
        ready = img->order.AddRange(op.get(), h.offset, h.offset + h.length);
        break;
      case FrameType::kResize:
        if (h.length > wire::kMaxImageSize) return bad("size beyond the image size limit");
        op->kind = Op::Kind::kResize;
        ready = img->order.AddRange(op.get(), 0, UINT64_MAX);
        break;
      case FrameType::kSync:
        op->kind = Op::Kind::kSync;
        ready = img->order.AddBarrier(op.get());
        break;
      case FrameType::kHashRequest: {
        const uint64_t max_blocks = wire::kMaxImageSize / img->block_size;
        if (h.length > wire::kMaxHashBlocks || h.offset > max_blocks || h.length > max_blocks - h.offset) {
          return bad("block range out of bounds");
        }
        op->kind = Op::Kind::kHash;
        ready = img->order.AddBarrier(op.get());
        break;
      }
      case FrameType::kFinishImage:
        op->kind = Op::Kind::kFinish;
        img->closing = true;
        ready = img->order.AddBarrier(op.get());
        break;
      case FrameType::kAbortImage:
        op->kind = Op::Kind::kAbort;
        img->closing = true;
        ready = img->order.AddBarrier(op.get());
        break;
      default:
        return;
    }
    Op* raw = op.release();
    live_.insert(raw);
    if (ready) ready_.push_back(raw);
  }

  void HandleOpen(const FrameHeader& h, const uint8_t* payload) {
    auto op = DecodeOpenImage(payload, h.payload_len);
    if (!op.ok()) {
      SendError(h.request_id, op.error());
      return;
    }
    const OpenImagePayload& o = op.value();
    auto r = OpenImage(o, (h.flags & wire::kFlagResume) != 0, (h.flags & wire::kFlagOverwrite) != 0);
    if (!r.ok()) {
      spdlog::warn("peer server: open_image refused: {}: {}", r.error().code, r.error().message);
      SendError(h.request_id, r.error());
      return;
    }
    SendAck(h.request_id, r.value().first, EncodeOpenReply(r.value().second));
  }

  Result<std::pair<uint32_t, OpenReplyPayload>> OpenImage(const OpenImagePayload& o, bool resume, bool overwrite) {
    Status v = ValidateImageName(o.name);
    if (!v.ok()) return v.error();
    if (o.block_size < wire::kMinBlockSize || o.block_size > wire::kMaxBlockSize) {
      return MakeError(errc::kInvalidArgument, "block size " + std::to_string(o.block_size) + " out of range");
    }
    if (o.size > wire::kMaxImageSize) return MakeError(errc::kInvalidArgument, "image size over the limit");
    if (images_.size() >= cfg_.max_images) {
      return MakeError(errc::kInvalidArgument, "too many images open on this connection");
    }
    if (!cfg_.instance_id.empty() && o.instance == cfg_.instance_id) {
      return MakeError(errc::kTargetIsSelf, "the target of " + o.name +
                                                " is the source daemon itself; nothing was changed");
    }
    auto opened = OpenReceiveFile(cfg_.src_dirfd, o.name);
    if (!opened.ok()) return opened.error();
    ReceiveFile f = opened.value();
    // Claim it first: a stale session of a source that reconnects closes its
    // descriptors here, so the checks below see only other writers.
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (source_instance_.empty()) source_instance_ = o.instance;
    }
    if (cfg_.receiving && cfg_.receiving->Acquire(f.dev, f.ino, this, o.instance, cfg_.idle_takeover,
                                                  cfg_.takeover_wait) != ReceivingSet::Claim::kOk) {
      CloseReceiveFile(f, false);  // someone else's file: never unlink it
      return MakeError(errc::kBusy, o.name + " is already being received by another (active) connection");
    }
    auto refuse = [&](const Error& e) -> Error {
      if (cfg_.receiving) cfg_.receiving->Release(f.dev, f.ino, this);
      CloseReceiveFile(f, true);  // removes the file only if this open created it
      return e;
    };
    for (const auto& [h, other] : images_) {
      if (other->dev == f.dev && other->ino == f.ino) return refuse(MakeError(errc::kBusy, o.name + " is already open on this connection"));
    }
    if (!f.created && cfg_.observer) {
      if (Status st = cfg_.observer->CheckReceivable(o.name, f.dev, f.ino); !st.ok()) return refuse(st.error());
    }
    if (Status st = AdmitReceiveFile(f, o.name, ReceiveClaim{o.identity, overwrite}); !st.ok()) {
      return refuse(st.error());
    }
    if (Status st = MakeReceiveFileWritable(f, o.name); !st.ok()) return refuse(st.error());
    if (Status st = PrepareReceiveFile(f, o.name, o.size, resume, o.identity); !st.ok()) return refuse(st.error());
    const OpenReplyPayload reply{!f.created, f.size_before, FreeBytes(f.fd)};
    auto img = std::make_unique<Image>();
    img->handle = next_handle_++;
    img->name = o.name;
    img->fd = f.fd;
    img->direct_fd = f.direct_fd;
    img->parent_fd = f.parent_fd;
    img->base = f.base;
    img->dev = f.dev;
    img->ino = f.ino;
    img->block_size = o.block_size;
    if (cfg_.observer) cfg_.observer->OnReceiving(img->name, img->dev, img->ino);
    const uint32_t handle = img->handle;
    images_.emplace(handle, std::move(img));
    return std::make_pair(handle, reply);
  }

  // ---------------------------------------------------------------- disk side

  static bool UsesRing(const Op* op) {
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
  void Pump() {
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

  void WaitRing() {
    ev_.async_read_some(asio::buffer(&ev_count_, sizeof ev_count_), [this](const boost::system::error_code& ec, size_t) {
      if (ec) return;
      Reap();
      WaitRing();
    });
  }

  void Reap() {
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

  void OnCompletion(Op* op, int res) {
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

  void RunInline(Op* op) {
    Image* img = op->img;
    switch (op->kind) {
      case Op::Kind::kResize:
        return Done(op, ::ftruncate(img->fd, static_cast<off_t>(op->length)) == 0 ? 0 : errno);
      case Op::Kind::kZero:
        return Done(op, WriteZeros(img->fd, op->offset, op->length));
      case Op::Kind::kHash:
        return HashOp(op);
      case Op::Kind::kAbort:
        return AbortOp(op);
      default:
        return Done(op, EINVAL);
    }
  }

  void HashOp(Op* op) {
    // Synchronous: the source asks for a few hundred blocks at a time, holes are
    // skipped with SEEK_DATA, and nothing else of this session can run meanwhile
    // without racing the reads anyway.
    const int err = HashFileBlocks(op->img->fd, op->offset, op->length, op->img->block_size, &hash_reply_);
    Done(op, err);
  }

  void AbortOp(Op* op) {
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

  Error DiskError(const Op* op, int err) const {
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
  void Done(Op* op, int err) {
    Image* img = op->img;
    std::vector<OrderEntry*> unblocked;
    img->order.Complete(op, &unblocked);
    for (OrderEntry* e : unblocked) ready_.push_back(static_cast<Op*>(e));
    if (op->kind == Op::Kind::kWrite) {
      buffered_bytes_ -= op->length;
      pool_.Put(std::move(op->buf), op->length);
    }
    live_.erase(op);
    std::unique_ptr<Op> owned(op);
    const uint32_t handle = img->handle;
    if (err != 0) {
      if (op->kind == Op::Kind::kFinish || op->kind == Op::Kind::kAbort) img->closing = false;  // may retry
      SendError(op->request_id, DiskError(op, err));
    } else if (op->kind == Op::Kind::kHash) {
      SendAck(op->request_id, handle, hash_reply_);
      hash_reply_.clear();
    } else if (op->kind == Op::Kind::kFinish) {
      if (::fremovexattr(img->fd, kStateXattr) != 0 && errno != ENODATA && errno != ENOTSUP) {
        img->closing = false;
        SendError(op->request_id, DiskError(op, errno));
        return;
      }
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

  void CloseImage(Image* img) {
    CloseFds(img);  // before the release, as in Cleanup
    if (cfg_.receiving) cfg_.receiving->Release(img->dev, img->ino, this);
    images_.erase(img->handle);
  }

  static void CloseFds(Image* img) {
    ::close(img->fd);
    if (img->direct_fd >= 0) ::close(img->direct_fd);
    ::close(img->parent_fd);
  }

  int fd_;
  const SessionConfig cfg_;
  HandshakeMonitor* const monitor_;
  asio::io_context io_;
  tcp::socket sock_;
  asio::posix::stream_descriptor ev_;
  asio::steady_timer linger_;
  uint64_t ev_count_ = 0;

  std::atomic<int64_t> last_rx_ms_{0};  // steady clock; read by other sessions (Idle)
  mutable std::mutex mu_;  // guards phase_, stop_requested_ and source_instance_ against Stop()
  std::string source_instance_;  // from the first OpenImage: which source daemon this is
  Phase phase_ = Phase::kIdle;
  bool stop_requested_ = false;

  // Session thread only.
  io_uring ring_{};
  bool ring_ok_ = false;
  unsigned inflight_ = 0;
  bool large_frames_ = false;  // the last frame had a large payload (see ReadMore)
  BufferPool pool_{32u << 20};  // per session: 64 sessions must not pin gigabytes
  bool reading_ = false, paused_ = false, closing_ = false, shut_ = false, writing_ = false, pumping_ = false;
  std::unique_ptr<uint8_t[]> rbuf_{new uint8_t[kReadChunk]};
  FrameReader reader_;
  uint8_t cur_raw_[wire::kHeaderSize] = {};
  FrameHeader cur_hdr_;
  PayloadBuffer cur_buf_;
  std::vector<std::string> out_, wbatch_;
  std::vector<asio::const_buffer> wbufs_;
  std::map<uint32_t, std::unique_ptr<Image>> images_;
  uint32_t next_handle_ = 1;
  std::unordered_set<Op*> live_;
  std::deque<Op*> ready_;
  uint64_t buffered_bytes_ = 0;
  std::string hash_reply_;
};

ReceiveSession::ReceiveSession(int fd, const SessionConfig& cfg, HandshakeMonitor* monitor)
    : impl_(std::make_unique<Impl>(fd, cfg, monitor)) {}
ReceiveSession::~ReceiveSession() = default;

void ReceiveSession::Run() {
  // Cleanup (wait for the disk, release the images, close the socket) runs however
  // Run ends; an exception is logged by the caller's thread after that.
  struct CleanupOnExit {
    Impl* impl;
    ~CleanupOnExit() { impl->Cleanup(); }
  } cleanup{impl_.get()};
  impl_->Run();
}

void ReceiveSession::Stop() { impl_->Stop(); }

}  // namespace migratefs::net
