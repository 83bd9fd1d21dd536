// Internals of ReceiveSession (receive_session.h), shared by its three parts:
//   receive_session.cc   the socket side: handshake, frame reading, replies, shutdown
//   receive_requests.cc  what each request frame asks for: validation, open_image
//   receive_disk.cc      the disk side: ordering, io_uring, completions, replies
// Everything here runs on the session's own thread unless a comment says otherwise.
#pragma once

#include <liburing.h>

#include <atomic>
#include <boost/asio.hpp>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "net/buffer_pool.h"
#include "net/peer/frame.h"
#include "net/peer/postcopy_image.h"
#include "net/peer/range_order.h"
#include "net/peer/receive_file.h"
#include "net/peer/receive_session.h"

namespace migratefs::net {

inline constexpr size_t kReadChunk = 256u << 10;
inline constexpr size_t kLargeFrame = 64u << 10;  // payloads from here on are read in place

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
  bool verify_only = false;  // opened with kFlagVerify: read-only, HashRequest only, never claimed
  // Hybrid copy after the switch-over: the VM's copy, fed block by block (postcopy_image.h).
  std::shared_ptr<PostcopyImage> postcopy;
  RangeOrder order;
};

struct Op : OrderEntry {
  enum class Kind { kWrite, kZero, kResize, kSync, kHash, kFinish, kAbort, kPostcopy };
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
  bool arrival = false;            // postcopy: a block of the source (PostcopyImage::BeginArrival said yes)
  std::string blob;                // kPostcopy: the map of remote blocks
  std::optional<Error> error;      // the reply when it fails for another reason than an errno
};

class ReceiveSession::Impl final : public ImageHolder {
 public:
  Impl(int fd, const SessionConfig& cfg, HandshakeMonitor* monitor)
      : fd_(fd), cfg_(cfg), monitor_(monitor), sock_(io_), ev_(io_), linger_(io_) {}
  ~Impl() {
    if (fd_ >= 0 && !sock_.is_open()) ::close(fd_);
  }
  void Run();
  std::chrono::milliseconds Idle() const override;
  std::string SourceInstance() const override;
  void Stop() override;
  void Cleanup();

 private:
  enum class Phase { kIdle, kHandshake, kRunning, kDone };

  // socket side (receive_session.cc)
  void NoteRx();
  bool Overloaded() const;
  void ReadMore();
  void Parse();
  bool OnFrame();
  void MaybeResume();
  void Send(std::string frame);
  void SendAck(uint64_t request_id, uint32_t handle, std::string_view payload = {});
  void SendError(uint64_t request_id, const Error& e);
  void WriteMore();
  void ProtocolError(const Error& e);
  void Shutdown();

  // requests (receive_requests.cc)
  void HandleFrame(const FrameHeader& h, PayloadBuffer payload);
  void HandleImageOp(const FrameHeader& h, PayloadBuffer payload);
  void HandleOpen(const FrameHeader& h, const uint8_t* payload);
  Status CheckOpenRequest(const OpenImagePayload& o) const;
  // Registers an opened file under a new handle (it owns f's descriptors from here).
  uint32_t AddImage(const ReceiveFile& f, const OpenImagePayload& o, bool verify_only);
  Result<std::pair<uint32_t, OpenReplyPayload>> OpenForVerify(const OpenImagePayload& o);
  Result<std::pair<uint32_t, OpenReplyPayload>> OpenImage(const OpenImagePayload& o, bool resume, bool overwrite);
  // kFlagPostcopy: a source whose link was lost comes back to its copy in postcopy.
  Result<std::pair<uint32_t, OpenReplyPayload>> ReattachPostcopy(const OpenImagePayload& o);
  // Checks a block frame of an image in postcopy; false if it was answered already
  // (refused, or dropped because the block is local).
  bool AdmitArrival(const FrameHeader& h, Image* img, Op* op, PayloadBuffer& payload);

  // disk side (receive_disk.cc)
  static bool UsesRing(const Op* op);
  void Pump();
  void WaitRing();
  void Reap();
  void OnCompletion(Op* op, int res);
  void RunInline(Op* op);
  void HashOp(Op* op);
  void AbortOp(Op* op);
  void PostcopyOp(Op* op);
  // Fetch requests of img's postcopy go out on this session from now on.
  void BindFetch(Image* img);
  void SendFetch(uint32_t handle, uint64_t first, uint64_t count, uint16_t flags);
  Error DiskError(const Op* op, int err) const;
  void Done(Op* op, int err);
  void CloseImage(Image* img);
  static void CloseFds(Image* img);

  int fd_;
  const SessionConfig cfg_;
  HandshakeMonitor* const monitor_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket sock_;
  boost::asio::posix::stream_descriptor ev_;
  boost::asio::steady_timer linger_;
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
  std::vector<boost::asio::const_buffer> wbufs_;
  std::map<uint32_t, std::unique_ptr<Image>> images_;
  uint32_t next_handle_ = 1;
  std::unordered_set<Op*> live_;
  std::deque<Op*> ready_;
  uint64_t buffered_bytes_ = 0;
  std::string hash_reply_;
};

}  // namespace migratefs::net
