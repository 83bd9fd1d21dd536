// PeerClient's send path (peer_client_impl.h): frames join an ordered queue
// (send_queue.h) under mu_; whoever holds the writer's turn (writing_) sends them. A
// frame queued while nobody writes is sent by the queuing thread itself with a
// non-blocking sendmsg; what the socket does not take, and everything queued while a
// write is under way, the I/O thread sends with gathered writes. net/README.md "Who
// writes the socket" says why.
#include <sys/socket.h>

#include <algorithm>

#include "net/peer/peer_client_impl.h"

namespace migratefs::net {

namespace {

// One gathered write takes at most this much (but always one whole frame): what is
// taken is committed, and a frame queued ahead (send_queue.h) can pass only what is
// still queued. With the socket's unsent bytes capped (TCP_NOTSENT_LOWAT) that bounds
// what such a frame waits behind on a slow link to about one block.
constexpr size_t kMaxBatchFrames = 64;
constexpr size_t kMaxBatchBytes = 256u << 10;

// Calls piece(pointer, length) for each part of each frame, in wire order.
template <typename Fn>
void ForEachPiece(const std::vector<OutFrame>& frames, Fn&& piece) {
  for (const OutFrame& f : frames) {
    piece(f.header, wire::kHeaderSize);
    if (f.data) piece(f.data.get(), f.data_len);
    if (!f.small.empty()) piece(f.small.data(), f.small.size());
  }
}

}  // namespace

void PeerClientImpl::Enqueue(FrameHeader h, OutFrame f, uint64_t payload_hash, uint64_t window_bytes, ReplyFn fn,
                             SendQueue::Place place, bool may_wait, bool awaited) {
  h.payload_len = static_cast<uint32_t>(f.data ? f.data_len : f.small.size());
  std::unique_lock<std::mutex> lk(mu_);
  if (dead_) {
    Error e = MakeError(errc::kPeerUnreachable, "connection to " + opts_.target + " is dead: " + death_reason_);
    lk.unlock();
    asio::post(io_, [fn = std::move(fn), e = std::move(e)] { fn(e, nullptr); });
    return;
  }
  h.request_id = next_id_++;
  EncodeHeaderWithPayloadHash(h, payload_hash, f.header);
  if (pending_.empty()) last_progress_ = Clock::now();
  pending_.emplace(h.request_id, Pending{std::move(fn), window_bytes, awaited});
  // Held behind enough unanswered awaited frames: their replies will send it (or the
  // flush timer, if they never come).
  const bool hold_awaited = awaited && opts_.awaited_batch_after > 0 && opts_.awaited_batch_wait.count() > 0 &&
                            awaited_unacked_ >= opts_.awaited_batch_after;
  if (awaited) awaited_unacked_++;
  inflight_ += window_bytes;
  queue_.Push(std::move(f), place);
  // While a write is under way its completion takes whatever is queued, held frames
  // included. Otherwise a frame that may wait leaves with the flush timer (armed by
  // the first of them), and any other frame leaves now, taking the held ones along.
  if (writing_) return;
  const bool hold = hold_awaited || (may_wait && opts_.coalesce_delay.count() > 0);
  if (hold && queue_.bytes() < opts_.coalesce_max_bytes) {
    if (hold_awaited) held_awaited_ = true;
    if (!flush_armed_) {
      flush_armed_ = true;
      const auto delay = hold_awaited ? opts_.awaited_batch_wait : opts_.coalesce_delay;
      asio::post(io_, [this, delay] { ArmFlush(delay); });
    }
    return;
  }
  writing_ = true;
  if (!opts_.send_from_caller || place == SendQueue::Place::kBulk) {
    asio::post(io_, [this] { WriteMore(); });
    return;
  }
  std::vector<OutFrame> frames;
  TakeBatch(&frames);
  lk.unlock();
  WriteFromCaller(std::move(frames));
}

void PeerClientImpl::WriteFromCaller(std::vector<OutFrame> frames) {
  writes_issued_.fetch_add(1);
  std::vector<iovec> iov;
  iov.reserve(3 * frames.size());
  size_t total = 0;
  ForEachPiece(frames, [&](const void* p, size_t len) {
    iov.push_back({const_cast<void*>(p), len});
    total += len;
  });
  ssize_t n = 0;
  {
    std::lock_guard<std::mutex> sl(sock_mu_);
    if (sock_closed_) return ReleaseFrames(&frames);  // Die failed their requests
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = iov.size();
    // Any error (EAGAIN, a reset) leaves the frames to the I/O thread's write, whose
    // error handling (Die) is the one place a connection is declared dead.
    n = ::sendmsg(sock_.native_handle(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) n = 0;
  }
  if (size_t(n) < total) {
    asio::post(io_, [this, frames = std::move(frames), n]() mutable {
      batch_ = std::move(frames);
      WriteBatch(size_t(n));
    });
    return;
  }
  ReleaseFrames(&frames);
  std::lock_guard<std::mutex> lk(mu_);
  if (queue_.empty() || dead_) {
    writing_ = false;
    return;
  }
  asio::post(io_, [this] { WriteMore(); });  // what was queued meanwhile
}

void PeerClientImpl::ArmFlush(std::chrono::microseconds delay) {
  coalesce_timer_.expires_after(delay);
  coalesce_timer_.async_wait([this](const boost::system::error_code& ec) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      flush_armed_ = false;
      if (ec || writing_ || queue_.empty() || dead_) return;  // a write under way takes them
      writing_ = true;
    }
    WriteMore();
  });
}

void PeerClientImpl::WriteMore() {
  batch_.clear();
  {
    std::lock_guard<std::mutex> lk(mu_);
    TakeBatch(&batch_);
    if (batch_.empty() || dead_) {
      writing_ = false;
      return;
    }
  }
  writes_issued_.fetch_add(1);
  WriteBatch(0);
}

void PeerClientImpl::WriteBatch(size_t skip) {
  bufs_.clear();
  ForEachPiece(batch_, [&](const void* p, size_t len) {
    const size_t dropped = std::min(skip, len);
    skip -= dropped;
    if (len > dropped) bufs_.emplace_back(static_cast<const uint8_t*>(p) + dropped, len - dropped);
  });
  asio::async_write(sock_, bufs_, [this](const boost::system::error_code& ec, size_t) {
    ReleaseFrames(&batch_);
    if (ec) {
      Die("send: " + ec.message());
      std::lock_guard<std::mutex> lk(mu_);
      writing_ = false;
      return;
    }
    WriteMore();
  });
}

// Every write the writer's turn starts goes on with the queue until it is empty, so
// whatever awaited_batch_after held leaves with it.
void PeerClientImpl::TakeBatch(std::vector<OutFrame>* out) {
  queue_.TakeBatch(kMaxBatchFrames, kMaxBatchBytes, out);
  held_awaited_ = false;
}

void PeerClientImpl::FlushHeldAwaited() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!held_awaited_ || writing_ || queue_.empty() || dead_) return;
    writing_ = true;
  }
  WriteMore();
}

}  // namespace migratefs::net
