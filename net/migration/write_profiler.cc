#include "net/migration/write_profiler.h"

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace migratefs::migration {

WriteProfiler::WriteProfiler(uint64_t block_bytes, uint64_t blocks)
    : block_bytes_(block_bytes == 0 ? 1 : block_bytes), blocks_(blocks), counts_(new std::atomic<uint32_t>[blocks]) {
  for (uint64_t i = 0; i < blocks_; ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void WriteProfiler::CountBlocks(uint64_t off, uint64_t len) {
  if (len == 0) return;
  const uint64_t first = off / block_bytes_;
  const uint64_t last = (off + len - 1) / block_bytes_;
  for (uint64_t b = first; b <= last; ++b) {
    if (b < blocks_) {
      // Saturating: 4 billion writes to one block in one window would be 1.2 M/s for an hour.
      uint32_t seen = counts_[b].load(std::memory_order_relaxed);
      if (seen != UINT32_MAX) counts_[b].fetch_add(1, std::memory_order_relaxed);
    } else {
      std::lock_guard<std::mutex> lock(beyond_mu_);
      beyond_[b]++;
    }
  }
}

void WriteProfiler::AfterWrite(uint64_t off, const void*, size_t len, Completion done) {
  done.Complete(0);  // the VM never waits for the profile
  if (len == 0) return;
  CountBlocks(off, len);
  writes_.fetch_add(1, std::memory_order_relaxed);
  bytes_.fetch_add(len, std::memory_order_relaxed);
}

void WriteProfiler::AfterZero(uint64_t off, uint64_t len) { CountBlocks(off, len); }

std::vector<policy::BlockCount> WriteProfiler::Counts(uint64_t below) const {
  std::vector<policy::BlockCount> out;
  const uint64_t dense = std::min(blocks_, below);
  for (uint64_t b = 0; b < dense; ++b) {
    uint32_t n = counts_[b].load(std::memory_order_relaxed);
    if (n != 0) out.push_back({b, double(n)});
  }
  std::lock_guard<std::mutex> lock(beyond_mu_);
  for (const auto& [b, n] : beyond_)
    if (b < below) out.push_back({b, double(n)});
  return out;
}

Result<std::vector<policy::BlockRange>> DataBlocks(int fd, uint64_t size, uint64_t block_bytes) {
  std::vector<policy::BlockRange> out;
  if (size == 0) return out;
  const uint64_t blocks = (size + block_bytes - 1) / block_bytes;
  auto add = [&](uint64_t from, uint64_t to) {  // bytes [from, to)
    uint64_t first = from / block_bytes;
    uint64_t end = std::min(blocks, (to + block_bytes - 1) / block_bytes);
    if (end <= first) return;
    if (!out.empty() && out.back().first + out.back().count >= first) {
      out.back().count = std::max(out.back().first + out.back().count, end) - out.back().first;
    } else {
      out.push_back({first, end - first});
    }
  };
  uint64_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(fd, off_t(pos), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole from here on
      if (errno == EINVAL || errno == EOPNOTSUPP) {  // no SEEK_DATA here: everything is data
        out.assign(1, {0, blocks});
        return out;
      }
      return MakeError(errc::kIo, std::string("SEEK_DATA: ") + std::strerror(errno));
    }
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return MakeError(errc::kIo, std::string("SEEK_HOLE: ") + std::strerror(errno));
    uint64_t end = std::min<uint64_t>(uint64_t(hole), size);
    if (uint64_t(data) >= size) break;
    add(uint64_t(data), end);
    if (uint64_t(hole) <= pos) break;  // no progress: a file system bug; what we have is it
    pos = uint64_t(hole);
  }
  return out;
}

policy::ImageProfile MakeProfile(const std::string& name, uint64_t size, double window_s,
                                 const WriteProfiler& profiler, std::vector<policy::BlockRange> data) {
  policy::ImageProfile p;
  p.name = name;
  p.image_bytes = size;
  p.block_bytes = profiler.block_bytes();
  p.window_s = window_s;
  const uint64_t blocks = (size + p.block_bytes - 1) / p.block_bytes;
  p.writes = profiler.Counts(blocks);
  p.data_known = true;
  p.data = std::move(data);
  if (profiler.writes() > 0) p.write_bytes = double(profiler.bytes_written()) / double(profiler.writes());
  return p;
}

}  // namespace migratefs::migration
