// File-level steps of receiving an image, kept apart from the session's event loop so
// each can be read (and tested) on its own. All functions are synchronous.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "migratefs/status.h"

namespace migratefs::net {

// The extended attribute that marks a copy being received ("receiving") or left
// behind by an aborted migration ("incomplete"); absent on a complete copy.
inline constexpr char kStateXattr[] = "user.migratefs.state";
// Set on a file a migration created, until that migration finishes: only such a file
// is ever removed by an abort (a migration never deletes what it did not create).
inline constexpr char kCreatedXattr[] = "user.migratefs.created";

// "ENOSPC (No space left on device)".
std::string ErrnoText(int err);

struct ReceiveFile {
  int fd = -1;         // O_RDWR, blocking; read-only for an existing file until MakeReceiveFileWritable
  int direct_fd = -1;  // the same file opened O_DIRECT for aligned writes; -1 if the fs refuses
  int parent_fd = -1;  // O_PATH directory that holds it (for the unlink on abort)
  std::string base;    // last component of the name
  dev_t dev = 0;
  ino_t ino = 0;
  bool created = false;      // this open created it
  bool writable = false;     // fd is O_RDWR
  uint64_t nlink = 1;        // its hard links when opened
  uint64_t size_before = 0;  // its size when opened
};

// Opens (creating if needed, mode 0600) the regular file `name` strictly beneath
// `src_dirfd`: the name is validated (net/image_name.h), and both the parent
// directory and the file are resolved with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), so no symlink is followed anywhere.
// The parent directory must exist. Errors: kBadName (invalid name, symlink, escape,
// directory, not a regular file), kNotFound (no such parent), kIo.
// A file this call creates is open O_RDWR at once. An existing file is opened
// read-only (and non-blocking, so a FIFO cannot hang the open): nothing can be written
// to it before the caller has admitted it (receive_admission.h) and called
// MakeReceiveFileWritable. Without `may_create` only an existing file is opened
// (read-only; kNotFound if there is none): for verify.
Result<ReceiveFile> OpenReceiveFile(int src_dirfd, const std::string& name, bool may_create = true);

// Reopens fd O_RDWR (if it is not yet) and opens direct_fd, both through
// /proc/self/fd, so they are the very same inode as the admitted fd. Error: kIo.
Status MakeReceiveFileWritable(ReceiveFile& f, const std::string& name);

// Closes the descriptors; with unlink_created, also removes a file this open created.
void CloseReceiveFile(ReceiveFile& f, bool unlink_created);

// Without resume truncates to 0 first; then sets the size, the "receiving" mark, the
// image's identity (if not empty) and, on a file this open created, kCreatedXattr (a
// filesystem without user xattrs is tolerated, with a warning). Error: kIo.
Status PrepareReceiveFile(const ReceiveFile& f, const std::string& name, uint64_t size, bool resume,
                          const std::string& identity);

// Bytes available to this process on the file system holding `fd` (0 if unknown).
uint64_t FreeBytes(int fd);

// Whether a migration created this file (kCreatedXattr is set).
bool CreatedByMigration(int fd);

// Per-block HashBlock of blocks [first, first+count) of fd (block_size bytes each),
// as count little-endian u64 in *out. Holes (SEEK_DATA) and blocks past EOF are not
// read: they hash like zeros. Returns 0 or an errno.
int HashFileBlocks(int fd, uint64_t first, uint64_t count, uint32_t block_size, std::string* out);

// Writes zeros over [off, off+len) clipped to EOF (never extends): the fallback for a
// filesystem that cannot punch holes. Returns 0 or an errno.
int WriteZeros(int fd, uint64_t off, uint64_t len);

}  // namespace migratefs::net
