// Source side of the peer protocol: one authenticated TCP connection to a target
// daemon's listen= address, carrying the blocks, zero ranges, mirrored writes, resizes
// and syncs of one migration's images (DESIGN.md "Peer protocol").
//
// Ordering contract: frames go on the wire in the order the Send* calls were made
// (calls from several threads are serialized by an internal lock), and the target
// applies writes/zeroes/resizes of one image that overlap in the order they arrived.
// So a later call for the same bytes always wins on the target (invariant I3).
//
// Acknowledgement contract: every Send* takes an AckFn that is called exactly once,
// on the client's I/O thread: with an ok Status once the target has applied the frame
// (written by the target, not necessarily fsynced — SendSync is for that), or with an
// Error when the target refused it (e.g. code "io_error" with ENOSPC in the message)
// or the connection died. After the connection dies every pending AckFn is called
// with code errc::kPeerUnreachable, and later calls fail the same way at once.
// AckFns must not block; they may call Send* again.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "migratefs/status.h"
#include "net/buffer_pool.h"
#include "net/socket_marking.h"

namespace migratefs::net {

struct PeerClientOptions {
  std::string target;        // "HOST:PORT"
  std::string key;           // pre-shared key bytes; empty = no authentication (peer must run insecure)
  uint64_t max_inflight_bytes = 64ull << 20;  // flow control window: unacknowledged payload bytes
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds io_timeout{30000};  // a peer that acks nothing for this long is dead
  // DSCP and socket priority of the connection (issue 12, item 3). Put on the socket
  // before connect(), so every packet of it is marked, the SYN included. Unset fields
  // leave the kernel's defaults. A marking the kernel refuses (EPERM for a priority
  // above 6 without CAP_NET_ADMIN) fails Connect with kIo naming the option.
  SocketMarking marking;
  // SendPace::kCoalesced frames wait up to this long for company before they are
  // sent, unless this many bytes are held or a frame that may not wait is queued
  // behind them (it takes them along). 0 = every frame leaves at once.
  std::chrono::microseconds coalesce_delay{0};
  uint64_t coalesce_max_bytes = 1ull << 20;
  // TCP_NOTSENT_LOWAT of the connection: the kernel holds at most about this much not
  // yet sent, the rest waits in the client's queue, where a frame someone waits for can
  // pass block copies (SendPace::kAhead). Without it a slow link's send buffer grows to
  // megabytes, and a fetched block or a synchronous write queues behind all of them.
  // 0 = the kernel's default (unlimited).
  uint32_t notsent_lowat = 256u << 10;
  // A frame queued while nothing is being written is written by the calling thread
  // itself (a non-blocking sendmsg) instead of being handed to the I/O thread: a
  // synchronous mirrored write then costs one thread wake-up less on the way out.
  // Whatever the socket does not take at once is finished by the I/O thread, in order.
  // Block copies (the bulk SendData) always go through the I/O thread. false = every
  // frame through the I/O thread (the A/B of bench/mirror).
  bool send_from_caller = true;
  // A SendPace::kAwaited frame queued while at least this many awaited frames are
  // unacknowledged is held like a kCoalesced one (until coalesce_max_bytes are held or a
  // frame that may not wait is queued), and every batch of acks that arrives also sends
  // what is held. Under a deep queue of synchronous mirrored writes they then leave
  // several per sendmsg, reach the target in one read and are answered together,
  // instead of costing both hosts a round of TCP processing each; below the threshold
  // each leaves at once, so a VM writing at queue depth 1 never waits for it. 0 = never.
  uint32_t awaited_batch_after = 0;
  // The longest a held awaited frame waits when no ack comes first: on a slow link the
  // oldest ack is a whole round trip away, far longer than a batch needs to form, and
  // waiting for it would halve what a deep queue gets through. (Held together with
  // kCoalesced frames, the first one's timer applies.) 0 = never held.
  std::chrono::microseconds awaited_batch_wait{200};
};

// How soon a data frame must leave, and how the target applies it.
enum class SendPace {
  kNow,  // at once, in order; a block copy's frame (the bulk overload) may be passed
  // At once, and ahead of the block copies queued before it that do not overlap it
  // (send_queue.h): a block a reader on the target waits for.
  kAhead,
  // Like kAhead, and a VM waits for the ack (a synchronous mirror): the target writes it
  // through its page cache at once instead of queueing a direct write (wire
  // kFlagAwaited; dropped for a target without kFeatureAwaitedWrites).
  kAwaited,
  // Nobody waits for the ack soon (an asynchronous mirror under its high mark): the
  // frame may be held for PeerClientOptions::coalesce_delay so that a stream of small
  // writes costs the I/O thread one wake-up and one send per batch, and the target one
  // read, instead of one each per write. Order with every other frame is kept.
  kCoalesced,
};

using AckFn = std::function<void(const Status&)>;

// Who sends an image (PeerClient::OpenImage).
struct ImageOrigin {
  std::string identity;  // the image's user.migratefs.id; "" = none
  std::string instance;  // the sending daemon's instance id; "" = none
  bool overwrite = false;
  // Reattach to the target's copy in postcopy (hybrid copy after finish, when the link
  // was lost): the target keeps the copy as the VM has it, neither resized nor marked.
  bool postcopy = false;
};

// A Fetch frame from the target (postcopy): a local reader there waits for blocks
// [first_block, first_block + count) of `handle` (waiting = false: no reader waits,
// the target only says it lacks them: its map, sent when a connection reattaches).
using FetchFn = std::function<void(uint32_t handle, uint64_t first_block, uint64_t count, bool waiting)>;

class PeerClient {
 public:
  // Closes the connection; pending AckFns get errors (on the I/O thread, before this
  // returns). Not from inside an AckFn: the I/O thread cannot wait for itself.
  virtual ~PeerClient() = default;

  // Connects, runs the handshake (magic, version, features, mutual HMAC-SHA256
  // challenge-response), and starts the I/O thread. Blocking.
  // Errors: kPeerUnreachable (connect/timeout), kAuthFailed (key mismatch, peer wants a
  // key we do not have, or the peer failed to prove it knows ours).
  static Result<std::unique_ptr<PeerClient>> Connect(const PeerClientOptions& opts);

  struct OpenedImage {
    uint32_t handle = 0;        // names the image in later calls on this connection
    bool existed = false;       // the target already had a (partial) copy
    uint64_t target_size = 0;   // its size then
    uint64_t free_bytes = 0;    // free space on the target's file system
  };
  // Opens `name` (relative to the target's SRC; validated on both sides) for receiving,
  // creating it if needed, and sets its size to `size`. `resume` = keep an existing
  // partial copy (its blocks are compared with HashBlocks); otherwise it is truncated to
  // 0 first. The target refuses local writers of the file until FinishImage or Abort
  // (invariant I6). Blocking round trip.
  // `origin` says which image this is (the target admits an existing file only if it
  // is a copy of the same identity, or with overwrite: net/peer/receive_admission.h) and
  // which daemon sends it (so a start to itself is refused: target_is_self).
  virtual Result<OpenedImage> OpenImage(const std::string& name, uint64_t size, uint32_t block_size,
                                        bool resume, const ImageOrigin& origin = {}) = 0;
  // Opens the target's existing copy of `name` read-only for HashBlocks only: nothing
  // on the target changes (no claim, no marks, local writers stay allowed), so it works
  // after FinishImage, when the VM may already run there. Refused with target_exists
  // if the copy carries another identity than origin.identity, not_found if absent.
  virtual Result<OpenedImage> OpenForVerify(const std::string& name, uint32_t block_size,
                                            const ImageOrigin& origin = {}) = 0;

  // Waits until `bytes` more payload fits the window, the timeout passes, or the
  // connection dies. Returns true when the caller may send.
  virtual bool WaitForWindow(uint64_t bytes, std::chrono::milliseconds timeout) = 0;

  // Asynchronous sends (see the contracts above). `data` is copied before returning.
  virtual void SendData(uint32_t handle, uint64_t offset, const void* data, uint32_t len, AckFn done,
                        SendPace pace = SendPace::kNow) = 0;
  // The same without the copy: the buffer (from AcquireBuffer(len)) goes on the wire
  // as it is and back to the pool once written. The bulk path reads each block
  // straight into one of these; sent kNow it counts as a block copy (passable).
  virtual void SendData(uint32_t handle, uint64_t offset, PayloadBuffer data, uint32_t len, AckFn done,
                        SendPace pace = SendPace::kNow) = 0;
  // A 4 KiB-aligned buffer of at least len bytes (fit for O_DIRECT reads), from the
  // pool that SendData returns buffers to. RecycleBuffer takes back one not sent.
  virtual PayloadBuffer AcquireBuffer(uint32_t len) = 0;
  virtual void RecycleBuffer(PayloadBuffer buf, uint32_t len) = 0;
  virtual void SendZero(uint32_t handle, uint64_t offset, uint64_t len, AckFn done) = 0;  // punch/zero: stays sparse
  virtual void SendResize(uint32_t handle, uint64_t new_size, AckFn done) = 0;
  virtual void SendSync(uint32_t handle, AckFn done) = 0;  // fdatasync on the target, after all earlier frames

  // xxh3-64 of each block [first, first+count) of the target copy (a block past EOF
  // hashes as empty; an all-zero block hashes like the same zeros). Blocking.
  virtual Result<std::vector<uint64_t>> HashBlocks(uint32_t handle, uint64_t first_block, uint64_t count) = 0;

  // Final fsync, then the target marks the copy complete and lets local writers in.
  virtual Status FinishImage(uint32_t handle) = 0;  // blocking
  // Cancel: the target removes its copy, or keeps it marked incomplete. Blocking.
  virtual Status AbortImage(uint32_t handle, bool keep_partial) = 0;

  // Hybrid switch-over (wire kPostcopy): the target's copy becomes the VM's; `remote`
  // is the PostcopyPayload bitmap of the blocks it still lacks, `size` the image's final
  // size, `timeout_s` how long its reads of remote blocks wait for a lost source before
  // they fail with EIO. Blocking round trip.
  virtual Status StartPostcopy(uint32_t handle, uint64_t size, uint64_t timeout_s, std::string remote) {
    return MakeError(errc::kInternal, "this peer client cannot hand a copy over (postcopy)");
  }
  // Called on the I/O thread for every Fetch frame. Set it before the first
  // StartPostcopy on the connection; it must not block.
  virtual void SetFetchHandler(FetchFn fn) {}

  virtual bool alive() const = 0;
  virtual uint64_t inflight_bytes() const = 0;
  // Gathered socket writes issued so far (each carries one or more frames).
  virtual uint64_t writes_issued() const { return 0; }
};

// xxh3-64 of a block as HashBlocks computes it (an all-zero block and a block beyond
// EOF of the same length hash the same), so both sides can compare.
// Precisely: XXH3-64 of data[0, n) where n excludes trailing zero bytes, so a block
// read short at EOF, a hole and an explicit run of zeros all agree.
uint64_t HashBlock(const void* data, size_t len);

}  // namespace migratefs::net
