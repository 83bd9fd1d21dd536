// PeerClient over Boost.Asio: one I/O thread runs the socket (reads, gathered writes,
// the ack watchdog); Send* calls from any thread append to an ordered queue under a
// lock. See peer_client.h for the contracts.
#include "net/peer/peer_client.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include "net/xxh.h"

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "net/address.h"
#include "net/buffer_pool.h"
#include "net/fd_io.h"
#include "net/peer/frame.h"
#include "net/peer/handshake.h"
#include "net/peer/send_queue.h"
#include "net/image_name.h"

namespace migratefs::net {

namespace asio = boost::asio;
using asio::ip::tcp;
using wire::FrameType;
using Clock = std::chrono::steady_clock;

uint64_t HashBlock(const void* data, size_t len) {
  // Trailing zero bytes are not hashed: a hole, a block past EOF, a zero block and a
  // block cut short by EOF then hash alike, whatever length each side happened to read.
  const auto* p = static_cast<const uint8_t*>(data);
  size_t n = len;
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p + n - 8, 8);
    if (w != 0) break;
    n -= 8;
  }
  while (n > 0 && p[n - 1] == 0) --n;
  return XXH3_64bits(p, n);
}

namespace {

// Called with the reply frame (Ack) or nullptr (error).
using ReplyFn = std::function<void(const Status&, const Frame*)>;

// One gathered write takes at most this much (but always one whole frame): what is
// taken is committed, and a frame queued ahead (send_queue.h) can pass only what is
// still queued. With the socket's unsent bytes capped (TCP_NOTSENT_LOWAT) that bounds
// what such a frame waits behind on a slow link to about one block.
constexpr size_t kMaxBatchFrames = 64;
constexpr size_t kMaxBatchBytes = 256u << 10;
constexpr size_t kReadChunk = 256u << 10;

// Calls piece(pointer, length) for each part of each frame, in wire order.
template <typename Fn>
void ForEachPiece(const std::vector<OutFrame>& frames, Fn&& piece) {
  for (const OutFrame& f : frames) {
    piece(f.header, wire::kHeaderSize);
    if (f.data) piece(f.data.get(), f.data_len);
    if (!f.small.empty()) piece(f.small.data(), f.small.size());
  }
}

class PeerClientImpl final : public PeerClient {
 public:
  explicit PeerClientImpl(const PeerClientOptions& opts)
      : opts_(opts),
        work_(asio::make_work_guard(io_)),
        sock_(io_),
        watchdog_(io_),
        coalesce_timer_(io_),
        rbuf_(new uint8_t[kReadChunk]) {}

  ~PeerClientImpl() override {
    if (thread_.joinable()) {
      if (std::this_thread::get_id() == thread_.get_id()) {
        // Destroyed from an AckFn: cannot join ourselves. Documented as not allowed.
        Die("client destroyed");
        io_.stop();
        thread_.detach();
        return;
      }
      asio::post(io_, [this] { Die("client closed"); });
      work_.reset();
      thread_.join();
    }
  }

  Status Start() {
    auto hp = ParseHostPort(opts_.target);
    if (!hp.ok()) return hp.error();
    boost::system::error_code ec;
    tcp::resolver resolver(io_);
    auto eps = resolver.resolve(hp.value().host, hp.value().port, ec);
    if (ec) return MakeError(errc::kPeerUnreachable, "resolve " + opts_.target + ": " + ec.message());

    // One address after the other, within one deadline (what asio's range connect
    // does), but each socket is opened and marked before its connect() so that the
    // SYN already carries the DSCP and priority.
    const auto deadline = Clock::now() + opts_.connect_timeout;
    boost::system::error_code cec = asio::error::host_not_found;
    for (const auto& entry : eps) {
      sock_.close(ec);
      sock_.open(entry.endpoint().protocol(), cec);
      if (cec) continue;
      if (Status marked = ApplySocketMarking(sock_.native_handle(), opts_.marking); !marked.ok()) {
        sock_.close(ec);
        Error e = marked.error();
        e.message = "marking the connection to " + opts_.target + ": " + e.message;
        return e;
      }
      bool done = false;
      sock_.async_connect(entry.endpoint(), [&](const boost::system::error_code& e) {
        cec = e;
        done = true;
      });
      while (!done && io_.run_one_until(deadline) > 0) {
      }
      if (!done) {
        sock_.close(ec);
        io_.restart();
        io_.poll();  // let the aborted handler run (it refers to locals)
        io_.restart();
        return MakeError(errc::kPeerUnreachable,
                         "connect to " + opts_.target + ": timed out after " +
                             std::to_string(opts_.connect_timeout.count()) + " ms");
      }
      io_.restart();
      if (!cec) break;
    }
    if (cec) {
      sock_.close(ec);
      return MakeError(errc::kPeerUnreachable, "connect to " + opts_.target + ": " + cec.message());
    }

    TunePeerSocket(sock_.native_handle());
    if (opts_.notsent_lowat > 0) {
      const int lowat = int(opts_.notsent_lowat);
      ::setsockopt(sock_.native_handle(), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
    }
    auto hs = RunClientHandshake(sock_.native_handle(), opts_.key, Clock::now() + opts_.connect_timeout);
    if (!hs.ok()) {
      Error e = hs.error();
      e.message = "handshake with " + opts_.target + ": " + e.message;
      return e;
    }
    features_ = hs.value().features;
    last_progress_ = Clock::now();
    StartRead();
    ArmWatchdog();
    thread_ = std::thread([this] { io_.run(); });
    return OkStatus();
  }

  Result<OpenedImage> OpenImage(const std::string& name, uint64_t size, uint32_t block_size, bool resume,
                                const ImageOrigin& origin) override {
    return Open(name, size, block_size,
                static_cast<uint16_t>((resume ? wire::kFlagResume : 0) | (origin.overwrite ? wire::kFlagOverwrite : 0) |
                                      (origin.postcopy ? wire::kFlagPostcopy : 0)),
                origin);
  }

  Result<OpenedImage> OpenForVerify(const std::string& name, uint32_t block_size, const ImageOrigin& origin) override {
    return Open(name, 0, block_size, wire::kFlagVerify, origin);
  }

  Result<OpenedImage> Open(const std::string& name, uint64_t size, uint32_t block_size, uint16_t flags,
                           const ImageOrigin& origin) {
    Status v = ValidateImageName(name);
    if (!v.ok()) return v.error();
    if (size > wire::kMaxImageSize) return MakeError(errc::kInvalidArgument, "image size over the protocol limit");
    if (block_size < wire::kMinBlockSize || block_size > wire::kMaxBlockSize) {
      return MakeError(errc::kInvalidArgument, "block size " + std::to_string(block_size) + " out of range");
    }
    FrameHeader h;
    h.type = FrameType::kOpenImage;
    h.flags = flags;
    if (origin.identity.size() > wire::kMaxIdentityLength) {
      return MakeError(errc::kInvalidArgument, "image identity longer than " +
                                                   std::to_string(wire::kMaxIdentityLength) + " bytes");
    }
    OutFrame f;
    f.small = EncodeOpenImage({size, block_size, name, origin.identity, origin.instance});
    Result<OpenedImage> out = MakeError(errc::kInternal, "no reply");
    Status st = Blocking(h, std::move(f), [&](const Status& s, const Frame* r) {
      if (!s.ok()) {
        out = s.error();
        return;
      }
      auto rep = DecodeOpenReply(r->payload.data(), r->payload.size());
      if (!rep.ok()) {
        out = rep.error();
        return;
      }
      out = OpenedImage{r->header.handle, rep.value().existed, rep.value().target_size, rep.value().free_bytes};
    });
    if (!st.ok()) return st.error();
    return out;
  }

  bool WaitForWindow(uint64_t bytes, std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lk(mu_);
    return window_cv_.wait_for(lk, timeout, [&] {
      return dead_ || inflight_ == 0 || inflight_ + bytes <= opts_.max_inflight_bytes;
    }) && !dead_;
  }

  void SendData(uint32_t handle, uint64_t offset, const void* data, uint32_t len, AckFn done,
                SendPace pace) override {
    if (len == 0 || len > wire::kMaxDataLength) return RefuseLength(len, std::move(done));
    PayloadBuffer buf = pool_.Get(len);
    std::memcpy(buf.get(), data, len);
    SendDataFrame(handle, offset, std::move(buf), len, pace, std::move(done));
  }

  void SendData(uint32_t handle, uint64_t offset, PayloadBuffer data, uint32_t len, AckFn done,
                SendPace pace) override {
    SendDataFrame(handle, offset, std::move(data), len, pace, std::move(done), /*bulk=*/pace == SendPace::kNow);
  }

  // `bulk`: a block copy, which frames queued ahead may pass (send_queue.h).
  void SendDataFrame(uint32_t handle, uint64_t offset, PayloadBuffer data, uint32_t len, SendPace pace,
                     AckFn done, bool bulk = false) {
    const bool awaited = pace == SendPace::kAwaited && (features_ & wire::kFeatureAwaitedWrites) != 0;
    const uint16_t flags = awaited ? wire::kFlagAwaited : 0;
    if (len == 0 || len > wire::kMaxDataLength || !data) return RefuseLength(len, std::move(done));
    FrameHeader h;
    h.type = FrameType::kData;
    h.flags = flags;
    h.handle = handle;
    h.offset = offset;
    h.length = len;
    OutFrame f;
    f.data = std::move(data);
    f.data_len = len;
    f.handle = handle;
    f.offset = offset;
    const uint64_t ph = PayloadHash(f.data.get(), len);
    const SendQueue::Place place = pace == SendPace::kAhead || pace == SendPace::kAwaited ? SendQueue::Place::kAhead
                                   : bulk                                                 ? SendQueue::Place::kBulk
                                                                                          : SendQueue::Place::kTail;
    Enqueue(h, std::move(f), ph, len, AckOnly(std::move(done)), place, pace == SendPace::kCoalesced);
  }

  PayloadBuffer AcquireBuffer(uint32_t len) override { return pool_.Get(len); }
  void RecycleBuffer(PayloadBuffer buf, uint32_t len) override { pool_.Put(std::move(buf), len); }

  void SendZero(uint32_t handle, uint64_t offset, uint64_t len, AckFn done) override {
    FrameHeader h;
    h.type = FrameType::kZero;
    h.handle = handle;
    h.offset = offset;
    h.length = len;
    EnqueueEmpty(h, std::move(done));
  }

  void SendResize(uint32_t handle, uint64_t new_size, AckFn done) override {
    FrameHeader h;
    h.type = FrameType::kResize;
    h.handle = handle;
    h.length = new_size;
    EnqueueEmpty(h, std::move(done));
  }

  void SendSync(uint32_t handle, AckFn done) override {
    FrameHeader h;
    h.type = FrameType::kSync;
    h.handle = handle;
    EnqueueEmpty(h, std::move(done));
  }

  Result<std::vector<uint64_t>> HashBlocks(uint32_t handle, uint64_t first_block, uint64_t count) override {
    if (count > wire::kMaxHashBlocks) {
      return MakeError(errc::kInvalidArgument, "at most " + std::to_string(wire::kMaxHashBlocks) + " blocks per call");
    }
    FrameHeader h;
    h.type = FrameType::kHashRequest;
    h.handle = handle;
    h.offset = first_block;
    h.length = count;
    Result<std::vector<uint64_t>> out = MakeError(errc::kInternal, "no reply");
    Status st = Blocking(h, OutFrame{}, [&](const Status& s, const Frame* r) {
      if (!s.ok()) {
        out = s.error();
        return;
      }
      if (r->payload.size() != count * 8) {
        out = MakeError(errc::kBadRequest, "protocol: hash reply has the wrong size");
        return;
      }
      std::vector<uint64_t> v(count);
      for (uint64_t i = 0; i < count; ++i) v[i] = GetLe64(r->payload.data() + i * 8);
      out = std::move(v);
    });
    if (!st.ok()) return st.error();
    return out;
  }

  Status FinishImage(uint32_t handle) override {
    FrameHeader h;
    h.type = FrameType::kFinishImage;
    h.handle = handle;
    Status out = OkStatus();
    Status st = Blocking(h, OutFrame{}, [&](const Status& s, const Frame*) { out = s; });
    return st.ok() ? out : st;
  }

  Status AbortImage(uint32_t handle, bool keep_partial) override {
    FrameHeader h;
    h.type = FrameType::kAbortImage;
    h.handle = handle;
    h.flags = keep_partial ? wire::kFlagKeepPartial : 0;
    Status out = OkStatus();
    Status st = Blocking(h, OutFrame{}, [&](const Status& s, const Frame*) { out = s; });
    return st.ok() ? out : st;
  }

  Status StartPostcopy(uint32_t handle, uint64_t size, uint64_t timeout_s, std::string remote) override {
    if (remote.size() > wire::kMaxFramePayload) {
      return MakeError(errc::kTooLarge, "postcopy: the block map does not fit one frame");
    }
    FrameHeader h;
    h.type = FrameType::kPostcopy;
    h.handle = handle;
    h.offset = timeout_s;
    h.length = size;
    OutFrame f;
    f.small = std::move(remote);
    Status out = OkStatus();
    Status st = Blocking(h, std::move(f), [&](const Status& s, const Frame*) { out = s; });
    return st.ok() ? out : st;
  }

  void SetFetchHandler(FetchFn fn) override {
    std::lock_guard<std::mutex> lk(mu_);
    fetch_ = std::move(fn);
  }

  bool alive() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return !dead_;
  }
  uint64_t inflight_bytes() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return inflight_;
  }
  uint64_t writes_issued() const override { return writes_issued_.load(); }

 private:
  static ReplyFn AckOnly(AckFn done) {
    return [done = std::move(done)](const Status& s, const Frame*) { done(s); };
  }

  void RefuseLength(uint32_t len, AckFn done) {
    Fail(std::move(done), MakeError(errc::kInvalidArgument, "data length " + std::to_string(len) + " out of range"));
  }

  // Calls `done` with `e` on the I/O thread (never inside the caller's Send*).
  void Fail(AckFn done, Error e) {
    asio::post(io_, [done = std::move(done), e = std::move(e)] { done(e); });
  }

  void EnqueueEmpty(FrameHeader h, AckFn done) {
    Enqueue(h, OutFrame{}, PayloadHash(nullptr, 0), 0, AckOnly(std::move(done)));
  }

  // Runs a request to completion on the calling thread (which must not be the I/O thread).
  Status Blocking(FrameHeader h, OutFrame f, ReplyFn on_reply) {
    if (std::this_thread::get_id() == thread_.get_id()) {
      return MakeError(errc::kInternal, "blocking PeerClient call from an AckFn (I/O thread)");
    }
    std::promise<void> p;
    auto fut = p.get_future();
    const uint64_t ph = PayloadHash(f.small.data(), f.small.size());
    Enqueue(h, std::move(f), ph, 0, [&](const Status& s, const Frame* r) {
      on_reply(s, r);
      p.set_value();
    });
    fut.wait();
    return OkStatus();
  }

  // `may_wait`: a SendPace::kCoalesced frame (see coalesce_delay).
  void Enqueue(FrameHeader h, OutFrame f, uint64_t payload_hash, uint64_t window_bytes, ReplyFn fn,
               SendQueue::Place place = SendQueue::Place::kTail, bool may_wait = false) {
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
    pending_.emplace(h.request_id, Pending{std::move(fn), window_bytes});
    inflight_ += window_bytes;
    queue_.Push(std::move(f), place);
    // While a write is under way its completion takes whatever is queued, held frames
    // included. Otherwise a frame that may wait leaves with the flush timer (armed by
    // the first of them), and any other frame leaves now, taking the held ones along.
    if (writing_) return;
    if (may_wait && opts_.coalesce_delay.count() > 0 && queue_.bytes() < opts_.coalesce_max_bytes) {
      if (!flush_armed_) {
        flush_armed_ = true;
        asio::post(io_, [this] { ArmFlush(); });
      }
      return;
    }
    writing_ = true;
    if (!opts_.send_from_caller || place == SendQueue::Place::kBulk) {
      asio::post(io_, [this] { WriteMore(); });
      return;
    }
    std::vector<OutFrame> frames;
    queue_.TakeBatch(kMaxBatchFrames, kMaxBatchBytes, &frames);
    lk.unlock();
    WriteFromCaller(std::move(frames));
  }

  // Caller's thread, holding the writer's turn (writing_): writes what the socket takes
  // now, and hands the rest, if any, to the I/O thread. The socket may be closed by Die
  // (I/O thread) meanwhile: sock_mu_ keeps its descriptor valid across the sendmsg.
  void WriteFromCaller(std::vector<OutFrame> frames) {
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

  void ReleaseFrames(std::vector<OutFrame>* frames) {
    for (OutFrame& f : *frames) pool_.Put(std::move(f.data), f.data_len);
    frames->clear();
  }

  // I/O thread: sends the held frames once coalesce_delay has passed.
  void ArmFlush() {
    coalesce_timer_.expires_after(opts_.coalesce_delay);
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

  // I/O thread: sends the next batch of queued frames with one gathered write.
  void WriteMore() {
    batch_.clear();
    {
      std::lock_guard<std::mutex> lk(mu_);
      queue_.TakeBatch(kMaxBatchFrames, kMaxBatchBytes, &batch_);
      if (batch_.empty() || dead_) {
        writing_ = false;
        return;
      }
    }
    writes_issued_.fetch_add(1);
    WriteBatch(0);
  }

  // I/O thread: writes batch_ but its first `skip` bytes (already on the socket), then
  // goes on with the queue.
  void WriteBatch(size_t skip) {
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

  void StartRead() {
    sock_.async_read_some(asio::buffer(rbuf_.get(), kReadChunk), [this](const boost::system::error_code& ec, size_t n) {
      if (ec) {
        Die(ec == asio::error::eof ? "peer closed the connection" : "receive: " + ec.message());
        return;
      }
      reader_.Append(rbuf_.get(), n);
      while (true) {
        auto f = reader_.Next();
        if (!f.ok()) {
          Die("bad frame from peer: " + f.error().message);
          return;
        }
        if (!f.value()) break;
        if (!Dispatch(*f.value())) return;
      }
      StartRead();
    });
  }

  // Returns false when the connection died.
  bool Dispatch(const Frame& f) {
    const FrameHeader& h = f.header;
    if (h.type == FrameType::kFetch) {
      FetchFn fetch;
      {
        std::lock_guard<std::mutex> lk(mu_);
        fetch = fetch_;
      }
      if (!fetch) {
        Die("protocol: fetch frame on a connection that handed nothing over");
        return false;
      }
      fetch(h.handle, h.offset, h.length, (h.flags & wire::kFlagFetchMap) == 0);
      return true;
    }
    if (h.type != FrameType::kAck && h.type != FrameType::kError) {
      Die(std::string("protocol: unexpected ") + FrameTypeName(h.type) + " frame from peer");
      return false;
    }
    Status status = OkStatus();
    if (h.type == FrameType::kError) {
      Error e = DecodeErrorPayload(f.payload.data(), f.payload.size());
      if (h.request_id == 0) {  // connection-level: the peer is closing on us
        Die("peer reported " + e.code + ": " + e.message);
        return false;
      }
      status = std::move(e);
    }
    Pending p;
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = pending_.find(h.request_id);
      if (it == pending_.end()) {
        // Unlock happens at scope end; Die takes the lock itself.
      } else {
        p = std::move(it->second);
        pending_.erase(it);
        inflight_ -= p.window_bytes;
        last_progress_ = Clock::now();
      }
    }
    if (!p.fn) {
      Die("protocol: reply to unknown request " + std::to_string(h.request_id));
      return false;
    }
    window_cv_.notify_all();
    p.fn(status, status.ok() ? &f : nullptr);
    return true;
  }

  void ArmWatchdog() {
    const auto period = std::clamp<std::chrono::milliseconds>(opts_.io_timeout / 4, std::chrono::milliseconds(10),
                                                              std::chrono::milliseconds(1000));
    watchdog_.expires_after(period);
    watchdog_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      bool stalled = false;
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (dead_) return;
        stalled = !pending_.empty() && Clock::now() - last_progress_ > opts_.io_timeout;
      }
      if (stalled) {
        Die("no acknowledgement from " + opts_.target + " for " + std::to_string(opts_.io_timeout.count()) + " ms");
        return;
      }
      ArmWatchdog();
    });
  }

  // I/O thread: declares the connection dead and fails every pending request in
  // request-id order.
  void Die(const std::string& reason) {
    std::map<uint64_t, Pending> failed;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (dead_) return;
      dead_ = true;
      death_reason_ = reason;
      failed.swap(pending_);
      inflight_ = 0;
      queue_.Clear();
    }
    window_cv_.notify_all();
    boost::system::error_code ec;
    {
      std::lock_guard<std::mutex> sl(sock_mu_);  // no caller's sendmsg on the descriptor
      sock_closed_ = true;
      sock_.shutdown(tcp::socket::shutdown_both, ec);
      sock_.close(ec);
    }
    watchdog_.cancel();
    coalesce_timer_.cancel();
    const Error e = MakeError(errc::kPeerUnreachable, "connection to " + opts_.target + " lost: " + reason);
    for (auto& [id, p] : failed) p.fn(e, nullptr);
  }

  struct Pending {
    ReplyFn fn;
    uint64_t window_bytes = 0;
  };

  const PeerClientOptions opts_;
  uint64_t features_ = 0;  // negotiated in the handshake (Connect, before any send)
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::socket sock_;
  asio::steady_timer watchdog_;
  asio::steady_timer coalesce_timer_;  // I/O thread only
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable window_cv_;
  bool dead_ = false;
  std::string death_reason_;
  uint64_t next_id_ = 1;
  FetchFn fetch_;
  std::map<uint64_t, Pending> pending_;
  uint64_t inflight_ = 0;
  Clock::time_point last_progress_;
  SendQueue queue_;
  bool writing_ = false;       // a gathered write is posted or under way
  bool flush_armed_ = false;   // the coalesce timer is posted or armed
  std::atomic<uint64_t> writes_issued_{0};
  std::mutex sock_mu_;        // WriteFromCaller's sendmsg against Die's close
  bool sock_closed_ = false;  // under sock_mu_

  // I/O thread only.
  std::vector<OutFrame> batch_;
  std::vector<asio::const_buffer> bufs_;
  std::unique_ptr<uint8_t[]> rbuf_;
  FrameReader reader_;
  BufferPool pool_{32u << 20};  // data payload copies (any thread)
};

}  // namespace

Result<std::unique_ptr<PeerClient>> PeerClient::Connect(const PeerClientOptions& opts) {
  auto c = std::make_unique<PeerClientImpl>(opts);
  Status st = c->Start();
  if (!st.ok()) return st.error();
  return std::unique_ptr<PeerClient>(std::move(c));
}

}  // namespace migratefs::net
