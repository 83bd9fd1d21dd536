#include "fs/device_io.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

namespace migratefs::fs {
namespace {

// libfuse grows its receive pipe to max_write + 4 KiB; that size must be one this
// process can actually set, or libfuse quietly stops splicing.
TEST(SplicedMaxWrite, LibfusesPipeFitsIt) {
  const size_t max_write = SplicedMaxWrite();
  ASSERT_GE(max_write, 64u * 1024);
  EXPECT_LE(max_write, size_t(1) << 20);
  EXPECT_EQ(max_write % 4096, 0u);
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  EXPECT_GE(fcntl(p[0], F_SETPIPE_SZ, int(max_write + 4096)), int(max_write + 4096));
  close(p[0]);
  close(p[1]);
}

}  // namespace
}  // namespace migratefs::fs
