// Who an image is, independent of its name. Two hosts each having a "vm1.img" is
// ordinary; a migration must only ever write into a file on the target that it
// created itself or that is a copy of the very image it sends (issue 15).
//
// The identity is a random 128-bit id (32 lowercase hex digits) kept in the image's
// extended attribute user.migratefs.id. The source stamps it the first time the image
// migrates; the target stamps the same id on the copy it receives, so the copy keeps
// it when it migrates on or back (and an incremental resume by hash compare finds it).
// Through the mount every user.migratefs.* attribute is read-only (fs/op_xattr.cc).
// A file copied with its xattrs (cp -a) shares its original's identity: give the copy a
// new one with `setfattr -x user.migratefs.id` in SRC before migrating both to one host.
#pragma once

#include <string>

#include "migratefs/status.h"

namespace migratefs::net {

inline constexpr char kIdentityXattr[] = "user.migratefs.id";

// The identity of the file open at `fd`, or "" when it has none (or the file system
// keeps no user xattrs).
std::string ReadImageIdentity(int fd);

// The identity of `fd`, stamping a new random one first if it has none. "" (with a
// warning logged) when the file system keeps no user xattrs: such an image can only
// be received into a file of that name with overwrite. Error: kIo.
Result<std::string> EnsureImageIdentity(int fd);

// Stamps `identity` on `fd` (replacing any). Returns 0 or an errno; ENOTSUP is
// reported to the caller, who decides whether it matters.
int WriteImageIdentity(int fd, const std::string& identity);

// `n` random bytes (OpenSSL RAND_bytes), e.g. a daemon's instance id.
std::string RandomBytes(size_t n);

}  // namespace migratefs::net
