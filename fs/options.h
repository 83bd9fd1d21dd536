// The command line: `migratefs SRC MNT [-o opt[,opt...]] [-f] [-d]`, also as
// invoked by mount.fuse3 from /etc/fstab (`SRC MNT fuse.migratefs opts`).
#pragma once

#include <string>
#include <vector>

#include "migratefs/mount_options.h"
#include "migratefs/status.h"

namespace migratefs::fs {

struct CommandLine {
  MountOptions opts;
  bool help = false;
  bool version = false;
  // Generic mount flags handed to the kernel mount (ro, nosuid, noexec, ...).
  std::vector<std::string> mount_flags;
  std::string fsname;    // shown in /proc/mounts; default: SRC
  double timeout = 1.0;  // attribute/entry cache seconds (timeout=)
  unsigned read_ahead_kb = 1024;  // read_ahead_kb= (0 = kernel default)
  unsigned dirty_max_mb = 1024;   // dirty_max_mb= (0 = kernel default: 1 % of dirtyable memory)
  bool splice_read = true;        // splice / nosplice: WRITE payloads through a pipe
  // killpriv_v2 / nokillpriv_v2: take over clearing set-id bits (init_reply.h, setid.h)
  // so the kernel stops asking for security.capability before every write.
  bool killpriv_v2 = true;
  // Run the worker under a supervisor that restarts it (supervisor.h); nosupervise
  // runs one process that takes the mount down with it, as before.
  bool supervise = true;
  std::string pidfile;  // pidfile=: the worker's PID, rewritten by every new worker
  // `migratefs --upgrade MNT`: not a mount; asks MNT's supervisor to re-exec.
  std::string upgrade_mountpoint;
  // --resume-supervisor=FD (internal, set by a supervisor that re-execs itself for an
  // upgrade): the state memfd to carry on with.
  int resume_state_fd = -1;
  int resume_reply_fd = -1;  // the --upgrade caller to answer, or -1
};

// Parses argv. Paths are returned as given (made absolute later, when they are
// opened). Fails on unknown options, malformed values and inconsistent
// combinations, with a message that names the offending option.
Result<CommandLine> ParseCommandLine(int argc, const char* const* argv);

// The --help text.
std::string UsageText();

}  // namespace migratefs::fs
