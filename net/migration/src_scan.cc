#include "net/migration/src_scan.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

namespace migratefs::migration {
namespace {

constexpr int kMaxDepth = 16;

// Walks the directory dirfd (named `prefix`, "" for SRC itself); takes ownership of dirfd.
size_t WalkUnder(int dirfd, const std::string& prefix, int depth, const char* xattr, const MarkedFileFn& fn) {
  DIR* dir = ::fdopendir(dirfd);
  if (!dir) {
    ::close(dirfd);
    return 0;
  }
  size_t found = 0;
  while (const dirent* e = ::readdir(dir)) {
    const std::string base = e->d_name;
    if (base == "." || base == "..") continue;
    const int fd = ::openat(::dirfd(dir), base.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) continue;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
      if (depth < kMaxDepth) {
        found += WalkUnder(fd, prefix + base + "/", depth + 1, xattr, fn);
      } else {
        ::close(fd);
      }
      continue;
    }
    // Values up to the kernel's XATTR_SIZE_MAX (a postcopy mark holds a journal entry).
    static thread_local std::vector<char> value(64 << 10);
    const ssize_t n = S_ISREG(st.st_mode) ? ::fgetxattr(fd, xattr, value.data(), value.size()) : -1;
    if (n >= 0) {
      fn(prefix + base, std::string(value.data(), static_cast<size_t>(n)), st.st_dev, st.st_ino, fd);
      ++found;
    }
    ::close(fd);
  }
  ::closedir(dir);
  return found;
}

}  // namespace

size_t ForEachMarkedFile(int src_dirfd, const char* xattr, const MarkedFileFn& fn) {
  const int fd = ::openat(src_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  return fd < 0 ? 0 : WalkUnder(fd, "", 0, xattr, fn);
}

}  // namespace migratefs::migration
