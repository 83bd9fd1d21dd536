// Claiming the filesystem path of the control socket.
#pragma once

#include <sys/types.h>

#include <string>

#include "migratefs/status.h"

namespace migratefs::control {

struct BoundSocket {
  int fd = -1;      // AF_UNIX stream socket, bound, not yet listening, close-on-exec
  dev_t dev = 0;    // identity of the socket file, so that cleanup removes only ours
  ino_t ino = 0;
};

// Binds a UNIX stream socket at `path` with mode 0600.
//  - A missing parent directory is created with mode 0700 (one level only).
//  - If `path` exists and is a socket with a live server behind it: busy, nothing touched.
//  - If it is a socket nobody answers on (a crashed daemon's leftover): removed.
//  - If it is anything else (file, directory, symlink): busy, nothing touched.
// Two daemons racing for the same path at the same instant are not arbitrated.
Result<BoundSocket> BindControlSocket(const std::string& path);

// Removes `path` if it is still the socket file `bound` created.
void RemoveControlSocket(const std::string& path, const BoundSocket& bound);

}  // namespace migratefs::control
