#include "net/peer/send_queue.h"

namespace migratefs::net {

bool SendQueue::Overlaps(const OutFrame& a, const OutFrame& b) {
  return a.handle == b.handle && a.offset < b.offset + b.data_len && b.offset < a.offset + a.data_len;
}

void SendQueue::Push(OutFrame f, Place place) {
  bytes_ += f.WireBytes();
  auto pos = q_.end();
  if (place == Place::kAhead) {
    // Walk back over the bulk frames at the tail; stop at anything else and at the
    // first block copy of the same bytes (it must land first).
    while (pos != q_.begin()) {
      const Entry& prev = *(pos - 1);
      if (!prev.bulk || Overlaps(prev.frame, f)) break;
      --pos;
    }
  }
  q_.insert(pos, Entry{std::move(f), place == Place::kBulk});
}

void SendQueue::TakeBatch(size_t max_frames, size_t max_bytes, std::vector<OutFrame>* out) {
  size_t taken = 0, n = 0;
  while (!q_.empty() && n < max_frames && (n == 0 || taken < max_bytes)) {
    taken += q_.front().frame.WireBytes();
    out->push_back(std::move(q_.front().frame));
    q_.pop_front();
    ++n;
  }
  bytes_ -= taken;
}

void SendQueue::Clear() {
  q_.clear();
  bytes_ = 0;
}

}  // namespace migratefs::net
