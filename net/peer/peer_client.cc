// PeerClient over Boost.Asio, the connection's half: connect and handshake, the
// request calls, reply dispatch, the ack watchdog and Die. The send path is
// peer_client_send.cc; the class is in peer_client_impl.h. See peer_client.h for the
// contracts.
#include "net/peer/peer_client_impl.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include "net/xxh.h"

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <condition_variable>
#include <cstring>
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

using wire::FrameType;

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

PeerClientImpl::~PeerClientImpl() {
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

Status PeerClientImpl::Start() {
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

Result<PeerClient::OpenedImage> PeerClientImpl::OpenImage(const std::string& name, uint64_t size, uint32_t block_size, bool resume,
                                const ImageOrigin& origin) {
  return Open(name, size, block_size,
              static_cast<uint16_t>((resume ? wire::kFlagResume : 0) | (origin.overwrite ? wire::kFlagOverwrite : 0) |
                                    (origin.postcopy ? wire::kFlagPostcopy : 0)),
              origin);
}

Result<PeerClient::OpenedImage> PeerClientImpl::Open(const std::string& name, uint64_t size, uint32_t block_size, uint16_t flags,
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

bool PeerClientImpl::WaitForWindow(uint64_t bytes, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  return window_cv_.wait_for(lk, timeout, [&] {
    return dead_ || inflight_ == 0 || inflight_ + bytes <= opts_.max_inflight_bytes;
  }) && !dead_;
}

void PeerClientImpl::SendData(uint32_t handle, uint64_t offset, const void* data, uint32_t len, AckFn done,
                SendPace pace) {
  if (len == 0 || len > wire::kMaxDataLength) return RefuseLength(len, std::move(done));
  PayloadBuffer buf = pool_.Get(len);
  std::memcpy(buf.get(), data, len);
  SendDataFrame(handle, offset, std::move(buf), len, pace, std::move(done));
}

void PeerClientImpl::SendDataFrame(uint32_t handle, uint64_t offset, PayloadBuffer data, uint32_t len, SendPace pace,
                     AckFn done, bool bulk) {
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
  Enqueue(h, std::move(f), ph, len, AckOnly(std::move(done)), place, pace == SendPace::kCoalesced,
          pace == SendPace::kAwaited);
}

void PeerClientImpl::SendZero(uint32_t handle, uint64_t offset, uint64_t len, AckFn done) {
  FrameHeader h;
  h.type = FrameType::kZero;
  h.handle = handle;
  h.offset = offset;
  h.length = len;
  EnqueueEmpty(h, std::move(done));
}

void PeerClientImpl::SendResize(uint32_t handle, uint64_t new_size, AckFn done) {
  FrameHeader h;
  h.type = FrameType::kResize;
  h.handle = handle;
  h.length = new_size;
  EnqueueEmpty(h, std::move(done));
}

void PeerClientImpl::SendSync(uint32_t handle, AckFn done) {
  FrameHeader h;
  h.type = FrameType::kSync;
  h.handle = handle;
  EnqueueEmpty(h, std::move(done));
}

Result<std::vector<uint64_t>> PeerClientImpl::HashBlocks(uint32_t handle, uint64_t first_block, uint64_t count) {
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

Status PeerClientImpl::FinishImage(uint32_t handle) {
  FrameHeader h;
  h.type = FrameType::kFinishImage;
  h.handle = handle;
  Status out = OkStatus();
  Status st = Blocking(h, OutFrame{}, [&](const Status& s, const Frame*) { out = s; });
  return st.ok() ? out : st;
}

Status PeerClientImpl::AbortImage(uint32_t handle, bool keep_partial) {
  FrameHeader h;
  h.type = FrameType::kAbortImage;
  h.handle = handle;
  h.flags = keep_partial ? wire::kFlagKeepPartial : 0;
  Status out = OkStatus();
  Status st = Blocking(h, OutFrame{}, [&](const Status& s, const Frame*) { out = s; });
  return st.ok() ? out : st;
}

Status PeerClientImpl::StartPostcopy(uint32_t handle, uint64_t size, uint64_t timeout_s, std::string remote) {
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

Status PeerClientImpl::Blocking(FrameHeader h, OutFrame f, ReplyFn on_reply) {
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

void PeerClientImpl::StartRead() {
  sock_.async_read_some(asio::buffer(rbuf_.get(), kClientReadChunk), [this](const boost::system::error_code& ec, size_t n) {
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
    FlushHeldAwaited();
    StartRead();
  });
}

bool PeerClientImpl::Dispatch(const Frame& f) {
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
      if (p.awaited) awaited_unacked_--;
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

void PeerClientImpl::ArmWatchdog() {
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

void PeerClientImpl::Die(const std::string& reason) {
  std::map<uint64_t, Pending> failed;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (dead_) return;
    dead_ = true;
    death_reason_ = reason;
    failed.swap(pending_);
    inflight_ = 0;
    awaited_unacked_ = 0;
    held_awaited_ = false;
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

Result<std::unique_ptr<PeerClient>> PeerClient::Connect(const PeerClientOptions& opts) {
  auto c = std::make_unique<PeerClientImpl>(opts);
  Status st = c->Start();
  if (!st.ok()) return st.error();
  return std::unique_ptr<PeerClient>(std::move(c));
}

}  // namespace migratefs::net
