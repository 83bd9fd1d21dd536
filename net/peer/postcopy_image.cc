#include "net/peer/postcopy_image.h"

#include <algorithm>
#include <cerrno>

#include <spdlog/spdlog.h>

namespace migratefs::net {

namespace {
// How often a waiter looks at the clock (the timeout) while nothing arrives.
constexpr auto kWaitSlice = std::chrono::milliseconds(100);
}  // namespace

PostcopyImage::PostcopyImage(std::string name, uint64_t size, uint32_t block_size, const std::string& remote,
                             std::chrono::milliseconds timeout, std::unique_ptr<PostcopyMap> map)
    : name_(std::move(name)), size_(size), block_size_(block_size), timeout_(timeout), map_(std::move(map)) {
  const uint64_t blocks = (size + block_size - 1) / block_size;
  state_.assign(blocks, kLocal);
  awaited_.assign(blocks, 0);
  uint64_t n = 0;
  for (uint64_t b = 0; b < blocks && b / 8 < remote.size(); b++) {
    if ((uint8_t(remote[b / 8]) >> (b % 8)) & 1) {
      state_[b] = kRemote;
      n++;
    }
  }
  remote_.store(n);
  progress_ = now_();
}

std::shared_ptr<PostcopyImage> PostcopyImage::Restore(std::string name, std::unique_ptr<PostcopyMap> map) {
  const uint64_t size = map->size();
  const uint32_t block_size = map->block_size();
  const auto timeout = map->timeout();
  const std::string remote = map->RemoteBitmap();
  return std::make_shared<PostcopyImage>(std::move(name), size, block_size, remote, timeout, std::move(map));
}

void PostcopyImage::MarkLocalLocked(uint64_t block) {
  state_[block] = kLocal;
  if (map_) map_->MarkLocal(block);
}

void PostcopyImage::DiscardMap() {
  std::lock_guard<std::mutex> lock(mu_);
  if (map_) map_->Discard();
  map_.reset();
}

void PostcopyImage::Bind(FetchFn fetch) {
  std::lock_guard<std::mutex> lock(mu_);
  fetch_ = std::move(fetch);
  progress_ = now_();
  // Whatever a reader waits for was asked on the old connection, and is asked again.
  for (uint64_t b = 0; b < state_.size(); b++)
    if (awaited_[b] && state_[b] == kRemote) fetch_(b, 1);
}

void PostcopyImage::Unbind() {
  std::lock_guard<std::mutex> lock(mu_);
  fetch_ = nullptr;
}

int PostcopyImage::CheckWriteOpen() {
  std::lock_guard<std::mutex> lock(mu_);
  if (given_back_) return EBUSY;
  used_ = true;
  return 0;
}

bool PostcopyImage::GiveBack(const std::string& instance) {
  std::lock_guard<std::mutex> lock(mu_);
  if (used_ || handed_over_by_.empty() || instance != handed_over_by_) return false;
  given_back_ = true;
  return true;
}

int PostcopyImage::BeforeRead(uint64_t off, uint64_t len) {
  if (AllLocal() || len == 0) return 0;
  const uint64_t first = off / block_size_;
  const uint64_t last = (off + len - 1) / block_size_;
  return AwaitLocal(first, last, 0, 0);
}

int PostcopyImage::BeforeChange(uint64_t off, uint64_t len) {
  if (int err = CheckWriteOpen()) return err;
  if (AllLocal()) return 0;
  const uint64_t bs = block_size_;
  if (len == 0) {
    // A truncate to `off`: blocks wholly past it are cut off (claimed: what the source
    // has of them must never land), the block it cuts in two keeps its head (fetched).
    const uint64_t cut_first = (off + bs - 1) / bs;
    if (cut_first < blocks()) AwaitLocal(cut_first, blocks() - 1, cut_first, blocks());
    return off % bs ? AwaitLocal(off / bs, off / bs, 0, 0) : 0;
  }
  const uint64_t first = off / bs;
  const uint64_t last = (off + len - 1) / bs;
  // Wholly covered: from a block boundary to the next one, or to the end of what the
  // source handed over (the rest of a short last block is not the source's).
  const uint64_t end = off + len;
  const uint64_t whole_begin = (off + bs - 1) / bs;
  const uint64_t whole_end = end >= size_ ? last + 1 : end / bs;
  return AwaitLocal(first, last, whole_begin, whole_end);
}

int PostcopyImage::AwaitLocal(uint64_t first, uint64_t last, uint64_t whole_begin, uint64_t whole_end) {
  std::unique_lock<std::mutex> lock(mu_);
  if (first >= state_.size()) return 0;  // past the hand-over's end: always local
  last = std::min<uint64_t>(last, state_.size() - 1);
  for (uint64_t b = std::max(first, whole_begin); b <= last && b < whole_end; b++) {
    if (state_[b] == kRemote) {
      MarkLocalLocked(b);
      remote_.fetch_sub(1);
    }
  }
  auto missing = [&] {
    for (uint64_t b = first; b <= last; b++)
      if (state_[b] != kLocal) return true;
    return false;
  };
  if (!missing()) return 0;
  if (!failed_.empty()) return EIO;
  const auto started = now_();
  fetches_++;
  for (uint64_t b = first; b <= last; b++) {
    if (state_[b] == kLocal) continue;
    awaited_[b] = 1;
    if (state_[b] == kRemote && fetch_) {
      uint64_t run = 1;
      while (b + run <= last && state_[b + run] == kRemote) awaited_[b + run++] = 1;
      fetch_(b, run);
      b += run - 1;
    }
  }
  for (;;) {
    arrived_.wait_for(lock, kWaitSlice);
    if (!missing()) break;
    FailIfStalledLocked(now_());
    if (!failed_.empty()) return EIO;
  }
  const auto now = now_();
  waits_.Add(now, now - started);
  return 0;
}

void PostcopyImage::FailIfStalledLocked(Clock::time_point now) {
  if (!failed_.empty() || now - progress_ < timeout_) return;
  failed_ = "no block from the source for " + std::to_string(timeout_.count() / 1000) +
            " s (postcopy_timeout): reads of the " + std::to_string(remote_.load()) +
            " blocks still on the source fail with EIO";
  spdlog::error("postcopy of \"{}\": {}", name_, failed_);
  arrived_.notify_all();
}

bool PostcopyImage::BeginArrival(uint64_t block) {
  std::lock_guard<std::mutex> lock(mu_);
  if (block >= state_.size() || state_[block] != kRemote) return false;
  state_[block] = kArriving;
  return true;
}

void PostcopyImage::EndArrival(uint64_t block, bool ok) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (block >= state_.size() || state_[block] != kArriving) return;
    if (!ok) {
      state_[block] = kRemote;
      return;
    }
    MarkLocalLocked(block);
    progress_ = now_();
    (awaited_[block] ? bytes_fetched_ : bytes_pulled_) += block_size_;
    awaited_[block] = 0;
    remote_.fetch_sub(1, std::memory_order_release);
  }
  arrived_.notify_all();
}

std::vector<std::pair<uint64_t, uint64_t>> PostcopyImage::RemoteRuns() const {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  std::lock_guard<std::mutex> lock(mu_);
  for (uint64_t b = 0; b < state_.size(); b++) {
    if (state_[b] == kLocal) continue;
    if (!runs.empty() && runs.back().first + runs.back().second == b) runs.back().second++;
    else runs.emplace_back(b, 1);
  }
  return runs;
}

IncomingInfo PostcopyImage::Info() const {
  IncomingInfo info;
  std::lock_guard<std::mutex> lock(mu_);
  info.image = name_;
  info.state = failed_.empty() ? "postcopy" : "failed";
  info.reason = failed_;
  info.blocks_total = state_.size();
  info.blocks_remote = remote_.load();
  info.bytes_pulled = bytes_pulled_;
  info.bytes_fetched_on_demand = bytes_fetched_;
  info.fetches = fetches_;
  const auto now = now_();
  info.fetch_latency_p50_ms = waits_.Quantile(now, 0.5);
  info.fetch_latency_p99_ms = waits_.Quantile(now, 0.99);
  return info;
}

}  // namespace migratefs::net
