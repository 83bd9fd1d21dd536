// The socket side of a receiving session: handshake, frames in, replies out.
#include "net/peer/receive_session.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "net/peer/handshake.h"
#include "net/log_throttle.h"
#include "net/peer/receive_file.h"
#include "net/peer/receive_session_impl.h"

namespace migratefs::net {

namespace asio = boost::asio;
using asio::ip::tcp;
using wire::FrameType;

void ReceiveSession::Impl::Run() {
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

std::chrono::milliseconds ReceiveSession::Impl::Idle() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()) -
         std::chrono::milliseconds(last_rx_ms_.load());
}

std::string ReceiveSession::Impl::SourceInstance() const {
  std::lock_guard<std::mutex> lk(mu_);
  return source_instance_;
}

void ReceiveSession::Impl::Stop() {
  std::lock_guard<std::mutex> lk(mu_);
  stop_requested_ = true;
  if (phase_ == Phase::kHandshake) {
    ::shutdown(fd_, SHUT_RDWR);  // wakes the blocking handshake
  } else if (phase_ == Phase::kRunning) {
    asio::post(io_, [this] { Shutdown(); });
  }
}

// Runs on the session thread after Run() returned: waits for the disk, then frees.
void ReceiveSession::Impl::Cleanup() {
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
  for (Op* op : live_) {
    // Never written: the block is remote again (the source resends what was not acked).
    if (op->arrival) op->img->postcopy->EndArrival(op->offset / op->img->block_size, false);
    delete op;
  }
  live_.clear();
  for (auto& [h, img] : images_) {
    // Partial copy stays marked "receiving" for a resume; no OnReceiveEnded.
    // Descriptors first: whoever takes the image over next checks that no one else
    // has it open for writing (receive_admission.h). A postcopy stops fetching on
    // this connection before a new one may take it over.
    if (img->postcopy) img->postcopy->Unbind();
    CloseFds(img.get());
    if (cfg_.receiving && !img->verify_only) cfg_.receiving->Release(img->dev, img->ino, this);
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

void ReceiveSession::Impl::NoteRx() {
  last_rx_ms_.store(std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now().time_since_epoch())
                        .count());
}

bool ReceiveSession::Impl::Overloaded() const {
  return buffered_bytes_ > cfg_.max_buffered_bytes || live_.size() > cfg_.max_pending_ops;
}

void ReceiveSession::Impl::ReadMore() {
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
void ReceiveSession::Impl::Parse() {
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
bool ReceiveSession::Impl::OnFrame() {
  Status st = VerifyChecksum(cur_raw_, cur_hdr_, cur_buf_.get());
  if (!st.ok()) {
    ProtocolError(st.error());
    return false;
  }
  HandleFrame(cur_hdr_, std::move(cur_buf_));
  return !closing_;
}

void ReceiveSession::Impl::MaybeResume() {
  if (paused_ && !closing_ && !Overloaded()) {
    paused_ = false;
    Parse();
  }
}

void ReceiveSession::Impl::Send(std::string frame) {
  out_.push_back(std::move(frame));
  if (!writing_) WriteMore();
}

void ReceiveSession::Impl::SendAck(uint64_t request_id, uint32_t handle, std::string_view payload) {
  FrameHeader h;
  h.type = FrameType::kAck;
  h.request_id = request_id;
  h.handle = handle;
  Send(EncodeFrame(h, payload));
}

void ReceiveSession::Impl::SendError(uint64_t request_id, const Error& e) {
  FrameHeader h;
  h.type = FrameType::kError;
  h.request_id = request_id;
  Send(EncodeFrame(h, EncodeErrorPayload(e)));
}

void ReceiveSession::Impl::WriteMore() {
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
void ReceiveSession::Impl::ProtocolError(const Error& e) {
  spdlog::warn("peer server: closing session: {}: {}", e.code, e.message);
  closing_ = true;
  SendError(0, e);
  linger_.expires_after(std::chrono::seconds(2));
  linger_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) Shutdown();
  });
}

void ReceiveSession::Impl::Shutdown() {
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
