// A mounted MigrateFS: opens SRC, checks MNT, creates the libfuse session, mounts,
// and runs the multithreaded loop. main() uses it, and so do the in-process tests.
#pragma once

#include <fuse_lowlevel.h>

#include <memory>
#include <string>
#include <thread>

#include "fs/fs.h"
#include "fs/options.h"
#include "migratefs/status.h"

namespace migratefs::fs {

class Session {
 public:
  // Opens SRC (O_PATH | O_DIRECTORY, before mounting, so MNT may be SRC) and mounts
  // it at MNT. On error nothing is mounted and the message says what was wrong.
  static Result<std::unique_ptr<Session>> Mount(const CommandLine& cl);
  ~Session();

  Fs& fs() { return *fs_; }
  HookRegistryImpl& hooks() { return fs_->hooks(); }
  // O_PATH | O_DIRECTORY on SRC, owned by the session.
  int src_dirfd() { return fs_->inodes().Root().fd; }
  fuse_session* raw() { return se_; }
  const std::string& mountpoint() const { return mountpoint_; }

  // Serves requests until the file system is unmounted (fusermount3 -u, umount) or
  // Exit() / a signal ends the loop. Returns 0 on a clean end.
  int Loop();
  // Ends Loop() from any thread: unmounts, which makes every worker's read of
  // /dev/fuse fail. Idempotent.
  void Exit();
  // Unmounts if still mounted. Idempotent.
  void Unmount();

 private:
  Session() = default;
  void TuneBdi();

  std::unique_ptr<Fs> fs_;
  fuse_session* se_ = nullptr;
  std::string mountpoint_;
  unsigned read_ahead_kb_ = 0;
  unsigned dirty_max_mb_ = 0;
  bool mounted_ = false;
  std::thread tuner_;
};

// The absolute, symlink-free form of `path`, or an Error naming `what`.
Result<std::string> ResolveDir(const std::string& path, const char* what);

}  // namespace migratefs::fs
