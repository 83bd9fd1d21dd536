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

// `src_dirfd` is an O_PATH|O_DIRECTORY fd on SRC opened before the mount, so the
// backing images stay reachable when MNT == SRC. `hooks` outlives the returned object.
Result<std::unique_ptr<Services>> StartServices(const MountOptions& opts, int src_dirfd,
                                               HookRegistry& hooks);

}  // namespace migratefs
