#include "net/migration/convergence.h"

#include <algorithm>

namespace migratefs::migration {

std::string ConvergenceWatch::Observe(uint64_t dirty, double send_bps, double dirty_bps, bool link_live,
                                      Clock::time_point now) {
  if (!link_live) {
    live_ = false;
    best_dirty_ = UINT64_MAX;  // judge shrinking afresh once the link is back
    return "";
  }
  if (!live_) {
    live_ = true;
    live_since_ = now;
  }
  double left = double(dirty) * double(block_size_);
  if (left <= std::max(8.0 * double(block_size_), send_bps * 0.25)) return "drained";
  if (now - std::max(start_, live_since_) >= std::chrono::seconds(2) && send_bps > 0 && dirty_bps >= 0.9 * send_bps)
    return "no convergence: dirtied at " + std::to_string(uint64_t(dirty_bps / 1000)) + " KB/s, sent at " +
           std::to_string(uint64_t(send_bps / 1000)) + " KB/s";
  // Nothing acknowledged (a cut link, a stalled peer): not a convergence problem, and
  // mirroring now would make the VM wait on a dead link. Wait.
  if (send_bps <= 0) return "";
  if (best_dirty_ == UINT64_MAX || dirty < best_dirty_ - best_dirty_ / 20) {
    best_dirty_ = dirty;
    best_at_ = now;
    return "";
  }
  auto pass = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(send_bps > 0 ? left / send_bps : 0.0));
  if (now - best_at_ >= std::max(stall_, pass))
    return "stalled: " + std::to_string(dirty) + " dirty blocks and not shrinking";
  return "";
}

}  // namespace migratefs::migration
