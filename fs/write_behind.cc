#include "fs/write_behind.h"

#include <fcntl.h>

namespace migratefs::fs {

void WriteBehind(int fd, off_t off, size_t len) {
  if (len < kWriteBehindMinBytes) return;
  // Errors (EIO of an earlier write-out, a file system without it) are fsync's to
  // report; this only hurries the write-out along.
  (void)sync_file_range(fd, off, static_cast<off_t>(len), SYNC_FILE_RANGE_WRITE);
}

}  // namespace migratefs::fs
