#include "net/migration/receive_guard.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "net/receive_file.h"

#include <spdlog/spdlog.h>

namespace migratefs::migration {

int IncomingImageHook::CheckWriteOpen() { return EBUSY; }
int IncomingImageHook::BeforeModify() { return EBUSY; }
int IncomingImageHook::CheckNamespaceChange() { return EBUSY; }

void ReceiveGuard::OnReceiving(const std::string& name, dev_t dev, ino_t ino) {
  spdlog::info("receiving \"{}\": local writers refused until the source finishes", name);
  hooks_.Attach(dev, ino, std::make_shared<IncomingImageHook>());
}

void ReceiveGuard::OnReceiveEnded(const std::string& name, dev_t dev, ino_t ino, bool complete) {
  spdlog::info("receiving \"{}\" ended: {}", name, complete ? "complete, writable" : "cancelled");
  hooks_.Detach(dev, ino);
  // Detach also makes the mount drop what it cached of the file (size, pages): the
  // copy was written straight into SRC, and the hypervisor opens it through the mount.
}

namespace {

bool MarkedReceiving(int fd) {
  char v[16];
  const ssize_t n = ::fgetxattr(fd, net::kStateXattr, v, sizeof v);
  return n == 9 && std::memcmp(v, "receiving", 9) == 0;
}

// Walks the directory dirfd (named `prefix`, "" for SRC itself); takes ownership of dirfd.
size_t GuardUnder(int dirfd, const std::string& prefix, int depth, net::ReceiveObserver& guard) {
  DIR* dir = ::fdopendir(dirfd);
  if (!dir) {
    ::close(dirfd);
    return 0;
  }
  size_t found = 0;
  while (const dirent* e = ::readdir(dir)) {
    const std::string base = e->d_name;
    if (base == "." || base == "..") continue;
    // O_NONBLOCK: a FIFO or device node in SRC must not stall the daemon's start.
    const int fd = ::openat(::dirfd(dir), base.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) continue;
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
    } else if (S_ISDIR(st.st_mode) && depth < 16) {
      found += GuardUnder(fd, prefix + base + "/", depth + 1, guard);
    } else {
      if (S_ISREG(st.st_mode) && MarkedReceiving(fd)) {
        guard.OnReceiving(prefix + base, st.st_dev, st.st_ino);
        ++found;
      }
      ::close(fd);
    }
  }
  ::closedir(dir);
  return found;
}

}  // namespace

size_t GuardPartialCopies(int src_dirfd, net::ReceiveObserver& guard) {
  const int fd = ::openat(src_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  return fd < 0 ? 0 : GuardUnder(fd, "", 0, guard);
}

}  // namespace migratefs::migration
