// An ImageHook that only refuses: opening for writing and every modification fail
// with `write_errno`, rename and unlink with EBUSY; reads and everything else pass.
// It guards a copy being received (EBUSY, invariant I6 on the target) and a source
// copy whose fence was restored after a daemon restart (EROFS, as before it).
#pragma once

#include <cerrno>
#include <cstdint>

#include "migratefs/image_hook.h"

namespace migratefs::migration {

class RefuseWritesHook : public ImageHook {
 public:
  explicit RefuseWritesHook(int write_errno) : write_errno_(write_errno) {}
  int CheckWriteOpen() override { return write_errno_; }
  int BeforeModify() override { return write_errno_; }
  int CheckNamespaceChange() override { return EBUSY; }
  void AfterWrite(uint64_t, const void*, size_t, Completion done) override { done.Complete(0); }
  void AfterResize(uint64_t) override {}
  void AfterZero(uint64_t, uint64_t) override {}
  void AfterSync(bool, Completion done) override { done.Complete(0); }

 private:
  const int write_errno_;
};

}  // namespace migratefs::migration
