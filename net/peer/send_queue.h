// The peer client's frames that are not on the wire yet, and the order they leave in.
//
// Frames leave in the order they were queued: the target applies them in arrival order,
// and that is what keeps I3 (two writes of the same bytes land in the order the source
// made them). One exception, so that what someone waits for does not queue behind
// megabytes of background copy on a slow link: a frame pushed kAhead (a block a reader
// on the target waits for, a write a VM waits for) passes the block copies (kBulk data
// frames) queued before it, as long as none of them overlaps its range on the same
// image. It passes nothing else: no other kAhead frame, no resize, zero, sync, open or
// finish, no bulk frame of the same bytes. So any two frames that touch the same bytes,
// or that order against a whole image, keep their order.
//
// Why only bulk frames may be passed: a block copy carries what the source read from
// its copy when it read it; the target does not care whether it lands before or after
// a write of other bytes. A resize or a zero range does not have that property (a
// truncate below a passing write would cut it off).
//
// Not thread-safe: the peer client calls it under its own lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "net/buffer_pool.h"
#include "net/peer/frame.h"

namespace migratefs::net {

// One encoded frame and what ordering needs to know about it.
struct OutFrame {
  uint8_t header[wire::kHeaderSize];
  PayloadBuffer data;   // large payload (data frames)
  std::string small;    // small payload (open, postcopy map)
  size_t data_len = 0;
  // The bytes of the image it writes: [offset, offset + data_len) of `handle`. Only
  // data frames have one (data_len > 0 and data set).
  uint32_t handle = 0;
  uint64_t offset = 0;

  size_t WireBytes() const { return wire::kHeaderSize + data_len + small.size(); }
};

class SendQueue {
 public:
  enum class Place {
    kTail,   // behind everything; nothing passes it
    kBulk,   // behind everything; a kAhead frame of other bytes may pass it
    kAhead,  // before the bulk frames at the tail that it does not overlap
  };

  void Push(OutFrame f, Place place);
  // Moves frames from the front into `out` for one gathered write: at least one (if
  // any), then more while fewer than max_frames are taken and the bytes taken stay
  // under max_bytes.
  void TakeBatch(size_t max_frames, size_t max_bytes, std::vector<OutFrame>* out);
  bool empty() const { return q_.empty(); }
  uint64_t bytes() const { return bytes_; }  // on the wire, of every queued frame
  void Clear();

 private:
  struct Entry {
    OutFrame frame;
    bool bulk;
  };
  static bool Overlaps(const OutFrame& a, const OutFrame& b);

  std::deque<Entry> q_;
  uint64_t bytes_ = 0;
};

}  // namespace migratefs::net
