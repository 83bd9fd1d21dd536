// Internals of PeerClient (peer_client.h), shared by its two parts:
//   peer_client.cc       the connection: connect and handshake, the request calls, reply
//                        dispatch, the ack watchdog, Die
//   peer_client_send.cc  the send path: the ordered queue, the writer's turn, coalescing,
//                        the caller's non-blocking sendmsg and the I/O thread's gathered
//                        writes
// Send* and the blocking calls run on any thread; what a comment marks "I/O thread"
// runs on the one thread that runs io_. mu_ guards the queue, the pending requests
// and the writer's turn; sock_mu_ only a caller's sendmsg against Die's close.
#pragma once

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net/buffer_pool.h"
#include "net/peer/frame.h"
#include "net/peer/peer_client.h"
#include "net/peer/send_queue.h"

namespace migratefs::net {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// Called with the reply frame (Ack) or nullptr (error).
using ReplyFn = std::function<void(const Status&, const Frame*)>;

inline constexpr size_t kClientReadChunk = 256u << 10;

class PeerClientImpl final : public PeerClient {
 public:
  explicit PeerClientImpl(const PeerClientOptions& opts)
      : opts_(opts),
        work_(asio::make_work_guard(io_)),
        sock_(io_),
        watchdog_(io_),
        coalesce_timer_(io_),
        rbuf_(new uint8_t[kClientReadChunk]) {}

  ~PeerClientImpl() override;

  Status Start();

  Result<OpenedImage> OpenImage(const std::string& name, uint64_t size, uint32_t block_size, bool resume,
                                const ImageOrigin& origin) override;

  Result<OpenedImage> OpenForVerify(const std::string& name, uint32_t block_size, const ImageOrigin& origin) override {
    return Open(name, 0, block_size, wire::kFlagVerify, origin);
  }

  Result<OpenedImage> Open(const std::string& name, uint64_t size, uint32_t block_size, uint16_t flags,
                           const ImageOrigin& origin);

  bool WaitForWindow(uint64_t bytes, std::chrono::milliseconds timeout) override;

  void SendData(uint32_t handle, uint64_t offset, const void* data, uint32_t len, AckFn done,
                SendPace pace) override;

  void SendData(uint32_t handle, uint64_t offset, PayloadBuffer data, uint32_t len, AckFn done,
                SendPace pace) override {
    SendDataFrame(handle, offset, std::move(data), len, pace, std::move(done), /*bulk=*/pace == SendPace::kNow);
  }

  // `bulk`: a block copy, which frames queued ahead may pass (send_queue.h).
  void SendDataFrame(uint32_t handle, uint64_t offset, PayloadBuffer data, uint32_t len, SendPace pace,
                     AckFn done, bool bulk = false);

  PayloadBuffer AcquireBuffer(uint32_t len) override { return pool_.Get(len); }
  void RecycleBuffer(PayloadBuffer buf, uint32_t len) override { pool_.Put(std::move(buf), len); }

  void SendZero(uint32_t handle, uint64_t offset, uint64_t len, AckFn done) override;

  void SendResize(uint32_t handle, uint64_t new_size, AckFn done) override;

  void SendSync(uint32_t handle, AckFn done) override;

  Result<std::vector<uint64_t>> HashBlocks(uint32_t handle, uint64_t first_block, uint64_t count) override;

  Status FinishImage(uint32_t handle) override;

  Status AbortImage(uint32_t handle, bool keep_partial) override;

  Status StartPostcopy(uint32_t handle, uint64_t size, uint64_t timeout_s, std::string remote) override;

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
  Status Blocking(FrameHeader h, OutFrame f, ReplyFn on_reply);

  // `may_wait`: a SendPace::kCoalesced frame (see coalesce_delay). `awaited`: a
  // SendPace::kAwaited one (counted for awaited_batch_after).
  void Enqueue(FrameHeader h, OutFrame f, uint64_t payload_hash, uint64_t window_bytes, ReplyFn fn,
               SendQueue::Place place = SendQueue::Place::kTail, bool may_wait = false, bool awaited = false);

  // Caller's thread, holding the writer's turn (writing_): writes what the socket takes
  // now, and hands the rest, if any, to the I/O thread. The socket may be closed by Die
  // (I/O thread) meanwhile: sock_mu_ keeps its descriptor valid across the sendmsg.
  void WriteFromCaller(std::vector<OutFrame> frames);

  void ReleaseFrames(std::vector<OutFrame>* frames) {
    for (OutFrame& f : *frames) pool_.Put(std::move(f.data), f.data_len);
    frames->clear();
  }

  // I/O thread: sends the held frames once `delay` has passed.
  void ArmFlush(std::chrono::microseconds delay);

  // I/O thread, after a read's replies: sends what awaited_batch_after held, if any.
  void FlushHeldAwaited();

  // Under mu_: the next batch of the queue into `out`.
  void TakeBatch(std::vector<OutFrame>* out);

  // I/O thread: sends the next batch of queued frames with one gathered write.
  void WriteMore();

  // I/O thread: writes batch_ but its first `skip` bytes (already on the socket), then
  // goes on with the queue.
  void WriteBatch(size_t skip);

  void StartRead();

  // Returns false when the connection died.
  bool Dispatch(const Frame& f);

  void ArmWatchdog();

  // I/O thread: declares the connection dead and fails every pending request in
  // request-id order.
  void Die(const std::string& reason);

  struct Pending {
    ReplyFn fn;
    uint64_t window_bytes = 0;
    bool awaited = false;  // SendPace::kAwaited
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
  uint32_t awaited_unacked_ = 0;  // SendPace::kAwaited frames without their reply
  bool held_awaited_ = false;     // an awaited frame is held (awaited_batch_after)
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

}  // namespace migratefs::net
