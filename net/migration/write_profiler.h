// The `profile` op's hook (issue 10 item 6; seed 002's "how many times a page is
// updated"): while attached to an image it counts the VM's writes per block, and
// acknowledges every write at once (it never delays, mirrors or refuses anything).
//
// Cost per write: one relaxed atomic add per block the write touches, two more for the
// totals. Blocks beyond the image's size when the profile began (the image grew) go to a
// small map under a lock. Engine::Profile attaches one per image for the window and
// detaches it after (never onto an image that has a hook already: a migration source, a
// fenced copy, a copy being received).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "broker/policy/hybrid_predictor.h"
#include "migratefs/image_hook.h"
#include "migratefs/status.h"

namespace migratefs::migration {

class WriteProfiler : public ImageHook {
 public:
  // `blocks`: the image's blocks when profiling begins (dense counters for these).
  WriteProfiler(uint64_t block_bytes, uint64_t blocks);

  int CheckWriteOpen() override { return 0; }
  int BeforeModify() override { return 0; }
  int CheckNamespaceChange() override { return 0; }
  void AfterWrite(uint64_t off, const void* data, size_t len, Completion done) override;
  void AfterResize(uint64_t new_size) override {}
  // A punch-hole or zero-range changes its blocks like a write (they would be resent);
  // it does not count towards the mean bytes per write (nothing mirrored carries them).
  void AfterZero(uint64_t off, uint64_t len) override;
  void AfterSync(bool datasync, Completion done) override { done.Complete(0); }

  // (block, writes) of every block written so far, by block; blocks >= `below` are left
  // out (an image cut short meanwhile).
  std::vector<policy::BlockCount> Counts(uint64_t below = UINT64_MAX) const;
  uint64_t writes() const { return writes_.load(std::memory_order_relaxed); }        // AfterWrite calls
  uint64_t bytes_written() const { return bytes_.load(std::memory_order_relaxed); }  // their bytes
  uint64_t block_bytes() const { return block_bytes_; }

 private:
  void CountBlocks(uint64_t off, uint64_t len);

  const uint64_t block_bytes_;
  const uint64_t blocks_;
  std::unique_ptr<std::atomic<uint32_t>[]> counts_;
  std::atomic<uint64_t> writes_{0};
  std::atomic<uint64_t> bytes_{0};
  mutable std::mutex beyond_mu_;
  std::map<uint64_t, uint64_t> beyond_;  // blocks >= blocks_
};

// Which blocks of the open file `fd` (`size` bytes) hold data, from SEEK_DATA/SEEK_HOLE,
// as sorted, merged [first_block, blocks] ranges: a block with any data byte counts.
// A file system without SEEK_DATA reports the whole file as data.
Result<std::vector<policy::BlockRange>> DataBlocks(int fd, uint64_t size, uint64_t block_bytes);

// The profile of one image from what `profiler` counted over `window_s` seconds:
// name, size, block size, write counts (blocks within `size` only), data blocks, mean
// bytes per write (4096 when nothing was written).
policy::ImageProfile MakeProfile(const std::string& name, uint64_t size, double window_s,
                                 const WriteProfiler& profiler, std::vector<policy::BlockRange> data);

}  // namespace migratefs::migration
