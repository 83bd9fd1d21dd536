// An ImageHook that only refuses: opening for writing and every modification fail
// with `write_errno`, rename and unlink with EBUSY; reads and everything else pass.
// It guards a copy being received (EBUSY, invariant I6 on the target) and a source
// copy whose fence was restored after a daemon restart (EROFS, as before it). With a
// `read_errno` it refuses reads too: a copy that was in postcopy when this daemon
// restarted lost the map of the blocks it lacks, and must never show its holes as data.
#pragma once

#include <cerrno>
#include <cstdint>

#include "migratefs/image_hook.h"

namespace migratefs::migration {

class RefuseWritesHook : public ImageHook {
 public:
  explicit RefuseWritesHook(int write_errno, int read_errno = 0) : write_errno_(write_errno), read_errno_(read_errno) {}
  int CheckWriteOpen() override { return write_errno_; }
  int BeforeRead(uint64_t, uint64_t) override { return read_errno_; }
  bool HidesData() const override { return read_errno_ != 0; }
  int BeforeModify() override { return write_errno_; }
  int CheckNamespaceChange() override { return EBUSY; }
  void AfterWrite(uint64_t, const void*, size_t, Completion done) override { done.Complete(0); }
  void AfterResize(uint64_t) override {}
  void AfterZero(uint64_t, uint64_t) override {}
  void AfterSync(bool, Completion done) override { done.Complete(0); }

 private:
  const int write_errno_;
  const int read_errno_;
};

}  // namespace migratefs::migration
