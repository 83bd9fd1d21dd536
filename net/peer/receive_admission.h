// Whether the target may receive an image into a file that already exists there.
// The rule (issue 15): a migration writes only into a file it created itself or into
// a copy of the very image it sends; never into a file with other names (a hard link
// could lead anywhere, RESOLVE_BENEATH does not see it); never while someone has the
// file open for writing. Checked on a read-only descriptor, before the file is opened
// for writing, truncated or marked.
//
// Caller: ReceiveSession::OpenImage, after claiming the file in the ReceivingSet (so a
// stale session of the same source has closed its descriptors) and after the daemon's
// own check (ReceiveObserver::CheckReceivable: not a migration source or fenced copy).
#pragma once

#include <string>

#include "migratefs/status.h"
#include "net/peer/receive_file.h"

namespace migratefs::net {

// What the source claims about the image it sends.
struct ReceiveClaim {
  std::string identity;    // the image's identity (image_identity.h); "" = unknown
  bool overwrite = false;  // the operator asked to replace a file of another identity
};

// OK, or: kBadName (more than one hard link), kTargetBusy (open for writing by anyone
// on this host), kTargetExists (not a copy of this image, and no overwrite). Files
// this very open created are always admitted.
Status AdmitReceiveFile(const ReceiveFile& f, const std::string& name, const ReceiveClaim& claim);

// Whether any process has the file open for writing. `fd` must be open read-only.
// Uses a read lease: the kernel grants one only when no writable descriptor of the
// inode exists anywhere (fcntl(2), F_SETLEASE), and it is released at once. A file
// system without leases answers "unknown" as false (logged once).
bool OpenForWritingElsewhere(int fd);

}  // namespace migratefs::net
