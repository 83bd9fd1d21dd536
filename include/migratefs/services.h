// The non-FUSE half of the daemon: control socket, peer listener, migration engine.
// fs/main.cc calls StartServices() after the mount exists and after daemonizing (so
// the service threads survive the fork), and stops them after the FUSE loop ends.
#pragma once

#include <memory>
#include <string>

#include "migratefs/image_hook.h"
#include "migratefs/mount_options.h"
#include "migratefs/status.h"

namespace migratefs {

class Services {
 public:
  virtual ~Services() = default;
  // Stops accepting requests and peers, pauses migrations, joins threads.
  virtual void Stop() = 0;
};

// Where the services keep what the worker that replaces this one after a crash or an
// upgrade needs (fs/supervisor.h; the engine's journal, net/migration/
// migration_journal.h). Load and Save may be called from any thread, one at a time.
class RestartJournal {
 public:
  virtual ~RestartJournal() = default;
  // What the last Save stored, or "" if nothing was ever saved.
  virtual std::string Load() = 0;
  // Replaces the stored document atomically (a crash in the middle leaves the
  // previous one). False when it does not fit (the previous one stays).
  virtual bool Save(const std::string& doc) = 0;
};

// `src_dirfd` is an O_PATH|O_DIRECTORY fd on SRC opened before the mount, so the
// backing images stay reachable when MNT == SRC. `hooks` outlives the returned object.
// `journal` (may be null, outlives the services): read at start (this daemon's
// instance id, the migrations a dead worker was running, which start again) and
// kept up to date.
Result<std::unique_ptr<Services>> StartServices(const MountOptions& opts, int src_dirfd,
                                               HookRegistry& hooks, RestartJournal* journal = nullptr);

}  // namespace migratefs
