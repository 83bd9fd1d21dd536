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
};

// Parses argv. Paths are returned as given (made absolute later, when they are
// opened). Fails on unknown options, malformed values and inconsistent
// combinations, with a message that names the offending option.
Result<CommandLine> ParseCommandLine(int argc, const char* const* argv);

// The --help text.
std::string UsageText();

}  // namespace migratefs::fs
