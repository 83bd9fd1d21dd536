// A mounted MigrateFS: opens SRC, checks MNT, creates the libfuse session, mounts,
// and runs the multithreaded loop. main() uses it, and so do the in-process tests.
#pragma once

#include <fuse_lowlevel.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fs/fs.h"
#include "fs/options.h"
#include "fs/restart_state.h"
#include "migratefs/status.h"

namespace migratefs::fs {

class Session {
 public:
  // Opens SRC (O_PATH | O_DIRECTORY, before mounting, so MNT may be SRC), mounts it
  // at MNT and answers the kernel's INIT. Inodes and handles are recorded in `state`
  // (a supervisor's, which outlives the session), or in a state of the session's own
  // when it is null. On error nothing is mounted and the message says what was
  // wrong.
  static Result<std::unique_ptr<Session>> Mount(const CommandLine& cl, RestartState* state = nullptr);
  // Takes over the mount a dead worker left in `state` (header().mounted): restores
  // every inode and handle, asks the kernel to resend what the dead worker had read
  // and not answered, closes the fds no record names (the dead worker's sockets,
  // pipes, half-done opens), and brings a new libfuse session to the post-INIT state
  // by replaying the saved INIT. Must run before this process opens any fd of its
  // own: everything not named by `state` is closed.
  static Result<std::unique_ptr<Session>> Resume(const CommandLine& cl, RestartState* state);
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
  // Creates se_ for fs_ with cl's mount options; false if libfuse refused them.
  bool NewLowLevelSession(const CommandLine& cl, const std::string& src, std::string* kopts);
  // Feeds INIT bytes to the libfuse session, adding those of `extra_flags` the kernel
  // offers to its reply and asking for READs of kReadPages (init_reply.h; the
  // session's I/O must be device_io.h's); true once the file system is initialized.
  bool ProcessInit(const std::vector<uint8_t>& init, uint32_t extra_flags = 0);

  std::unique_ptr<RestartState> own_state_;
  RestartState* state_ = nullptr;
  bool resumed_ = false;  // the mount is not libfuse's: Unmount() unmounts it itself
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
