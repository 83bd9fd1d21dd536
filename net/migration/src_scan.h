// Finding the files of SRC that carry one of our marks (extended attributes), at
// daemon start: partial copies still being received, source copies still fenced.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

namespace migratefs::migration {

// Calls fn(name relative to SRC, the attribute's value, dev, ino, an O_RDONLY fd of
// the file, valid during the call) for every regular file under src_dirfd that has
// the extended attribute `xattr`. Symlinks are not followed; FIFOs and devices are
// never read (opened O_NONBLOCK, then skipped); the walk stops 16 directories deep.
// Returns how many files matched.
using MarkedFileFn = std::function<void(const std::string& name, const std::string& value, dev_t dev, ino_t ino, int fd)>;
size_t ForEachMarkedFile(int src_dirfd, const char* xattr, const MarkedFileFn& fn);

}  // namespace migratefs::migration
