#include "net/peer/receive_file.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "net/peer/frame.h"        // PutLe64
#include "net/image_identity.h"
#include "net/image_name.h"
#include "net/peer/peer_client.h"  // HashBlock

namespace migratefs::net {

namespace {

// openat2 confined beneath dirfd, refusing every symlink (invariant I5). -1 + errno.
int OpenBeneath(int dirfd, const std::string& path, uint64_t flags, uint64_t mode) {
  open_how how{};
  how.flags = flags;
  how.mode = mode;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how));
}

Error PathError(const std::string& name, int err, const std::string& what) {
  switch (err) {
    case ENOENT:
      return MakeError(errc::kNotFound, name + ": " + what + " does not exist on the target");
    case ENOTDIR:
      return MakeError(errc::kBadName, name + ": " + what + ": a path component is not a directory");
    case ELOOP:
      return MakeError(errc::kBadName, name + ": " + what + ": symlinks are not followed");
    case EXDEV:
      return MakeError(errc::kBadName, name + ": " + what + " would resolve outside the served directory");
    case EISDIR:
      return MakeError(errc::kBadName, name + " is a directory");
    default:
      return MakeError(errc::kIo, name + ": " + what + ": " + ErrnoText(err));
  }
}

}  // namespace

std::string ErrnoText(int err) {
  const char* name = strerrorname_np(err);
  return std::string(name ? name : "errno " + std::to_string(err)) + " (" + std::strerror(err) + ")";
}

Result<ReceiveFile> OpenReceiveFile(int src_dirfd, const std::string& name, bool may_create) {
  Status v = ValidateImageName(name);
  if (!v.ok()) return v.error();
  std::string parent;
  ReceiveFile f;
  SplitImageName(name, &parent, &f.base);
  f.parent_fd = OpenBeneath(src_dirfd, parent, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
  if (f.parent_fd < 0) return PathError(name, errno, "parent directory");
  // O_NONBLOCK keeps the open itself from blocking on a FIFO or device node; it is
  // cleared below once we know the file is regular.
  const uint64_t flags = O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK;
  f.created = f.writable = may_create;
  f.fd = may_create ? OpenBeneath(f.parent_fd, f.base, flags | O_RDWR | O_CREAT | O_EXCL, 0600) : -1;
  if (!may_create || (f.fd < 0 && errno == EEXIST)) {
    f.created = f.writable = false;
    f.fd = OpenBeneath(f.parent_fd, f.base, flags | O_RDONLY, 0);
  }
  if (f.fd < 0) {
    const int err = errno;
    ::close(f.parent_fd);
    return PathError(name, err, "image");
  }
  struct stat st {};
  Error e;
  if (::fstat(f.fd, &st) != 0) {
    e = MakeError(errc::kIo, name + ": fstat: " + ErrnoText(errno));
  } else if (!S_ISREG(st.st_mode)) {
    e = MakeError(errc::kBadName, name + " is not a regular file");
  } else if (const int fl = ::fcntl(f.fd, F_GETFL); fl < 0 || ::fcntl(f.fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
    // Left on, O_NONBLOCK would make io_uring fail writes with EAGAIN on
    // filesystems without NOWAIT support.
    e = MakeError(errc::kIo, name + ": fcntl: " + ErrnoText(errno));
  } else {
    f.dev = st.st_dev;
    f.ino = st.st_ino;
    f.nlink = st.st_nlink;
    f.size_before = static_cast<uint64_t>(st.st_size);
    return f;
  }
  CloseReceiveFile(f, true);
  return e;
}

Status MakeReceiveFileWritable(ReceiveFile& f, const std::string& name) {
  // Reopening the magic link of our own fd cannot reach another file.
  const std::string self = "/proc/self/fd/" + std::to_string(f.fd);
  if (!f.writable) {
    const int rw = ::open(self.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (rw < 0) return MakeError(errc::kIo, name + ": reopen for writing: " + ErrnoText(errno));
    ::close(f.fd);
    f.fd = rw;
    f.writable = true;
  }
  // Received blocks are written once and not read back: O_DIRECT writes skip the
  // copy into the page cache (the biggest CPU cost of receiving) and the dirty-page
  // throttling of a long stream. -1 if the file system refuses O_DIRECT.
  if (f.direct_fd < 0) {
    const std::string rw_self = "/proc/self/fd/" + std::to_string(f.fd);
    f.direct_fd = ::open(rw_self.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC | O_NOCTTY);
  }
  return OkStatus();
}

void CloseReceiveFile(ReceiveFile& f, bool unlink_created) {
  if (unlink_created && f.created && f.parent_fd >= 0) ::unlinkat(f.parent_fd, f.base.c_str(), 0);
  if (f.fd >= 0) ::close(f.fd);
  if (f.direct_fd >= 0) ::close(f.direct_fd);
  if (f.parent_fd >= 0) ::close(f.parent_fd);
  f.fd = f.direct_fd = f.parent_fd = -1;
}

uint64_t FreeBytes(int fd) {
  struct statvfs vfs {};
  return ::fstatvfs(fd, &vfs) == 0 ? uint64_t(vfs.f_bavail) * vfs.f_frsize : 0;
}

bool CreatedByMigration(int fd) {
  char c;
  return ::fgetxattr(fd, kCreatedXattr, &c, 1) >= 0;
}

Status PrepareReceiveFile(const ReceiveFile& f, const std::string& name, uint64_t size, bool resume,
                          const std::string& identity) {
  if (!resume && f.size_before != 0 && ::ftruncate(f.fd, 0) != 0) {
    return MakeError(errc::kIo, name + ": truncate: " + ErrnoText(errno));
  }
  if (::ftruncate(f.fd, static_cast<off_t>(size)) != 0) {
    return MakeError(errc::kIo, name + ": set size " + std::to_string(size) + ": " + ErrnoText(errno));
  }
  struct Mark {
    const char* xattr;
    std::string value;
  };
  std::vector<Mark> marks{{kStateXattr, "receiving"}};
  if (!identity.empty()) marks.push_back({kIdentityXattr, identity});
  if (f.created) marks.push_back({kCreatedXattr, "1"});
  for (const Mark& m : marks) {
    if (::fsetxattr(f.fd, m.xattr, m.value.data(), m.value.size(), 0) == 0) continue;
    if (errno != ENOTSUP) return MakeError(errc::kIo, name + ": set " + m.xattr + ": " + ErrnoText(errno));
    spdlog::warn("peer server: {}: filesystem has no user xattrs; {} is not persisted", name, m.xattr);
  }
  return OkStatus();
}

int HashFileBlocks(int fd, uint64_t first, uint64_t count, uint32_t block_size, std::string* out) {
  const uint64_t bs = block_size;
  out->assign(count * 8, '\0');
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno;
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const uint64_t zero_hash = HashBlock(nullptr, 0);
  std::unique_ptr<uint8_t[]> buf;
  uint64_t next_data = 0;  // no data before this offset (from SEEK_DATA)
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t off = (first + i) * bs;
    uint64_t h = zero_hash;
    if (off < size) {
      if (next_data <= off) {
        const off_t d = ::lseek(fd, static_cast<off_t>(off), SEEK_DATA);
        next_data = d < 0 ? UINT64_MAX : static_cast<uint64_t>(d);  // ENXIO: only holes left
      }
      if (next_data < off + bs) {
        if (!buf) buf.reset(new uint8_t[bs]);
        const size_t want = static_cast<size_t>(std::min(bs, size - off));
        size_t got = 0;
        while (got < want) {
          const ssize_t r = ::pread(fd, buf.get() + got, want - got, static_cast<off_t>(off + got));
          if (r < 0 && errno == EINTR) continue;
          if (r < 0) return errno;
          if (r == 0) break;
          got += static_cast<size_t>(r);
        }
        h = HashBlock(buf.get(), got);
      }
    }
    PutLe64(reinterpret_cast<uint8_t*>(out->data()) + i * 8, h);
  }
  return 0;
}

int WriteZeros(int fd, uint64_t off, uint64_t len) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno;
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (off >= size) return 0;
  const uint64_t end = std::min(size, off + len);
  static const std::vector<uint8_t> zeros(1u << 20, 0);
  while (off < end) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), end - off));
    const ssize_t w = ::pwrite(fd, zeros.data(), n, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? errno : EIO;
    off += static_cast<uint64_t>(w);
  }
  return 0;
}

}  // namespace migratefs::net
