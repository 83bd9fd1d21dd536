// Per-opendir state (fuse_file_info::fh of a directory).
#pragma once

#include <dirent.h>
#include <sys/types.h>

namespace migratefs::fs {

struct Dir {
  explicit Dir(DIR* dp) : dp(dp) {}
  ~Dir() { closedir(dp); }
  Dir(const Dir&) = delete;
  Dir& operator=(const Dir&) = delete;
  DIR* dp;
  // Where the next readdir continues; -1 when unknown (a restarted worker), which
  // makes the next call seek to the kernel's offset.
  off_t offset = 0;
  dirent* entry = nullptr;  // read but not yet returned (did not fit)
};

}  // namespace migratefs::fs
