#include "net/control/socket_path.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace migratefs::control {
namespace {

std::string ErrnoText(int err) { return std::string(strerror(err)); }

Error IoError(const std::string& what, const std::string& path, int err) {
  return MakeError(errc::kIo, what + " " + path + ": " + ErrnoText(err));
}

Result<sockaddr_un> MakeAddress(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return MakeError(errc::kInvalidArgument,
                     "control socket path must be 1.." +
                         std::to_string(sizeof(address.sun_path) - 1) + " bytes: " + path);
  }
  memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}

Status EnsureParentDirectory(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return OkStatus();
  std::string parent = path.substr(0, slash);
  if (mkdir(parent.c_str(), 0700) == 0 || errno == EEXIST) return OkStatus();
  return IoError("cannot create directory", parent, errno);
}

// Whether a server accepts connections at `address` right now.
Result<bool> SomeoneListens(const sockaddr_un& address, const std::string& path) {
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) return IoError("cannot create socket for", path, errno);
  int rc = connect(probe, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  int err = errno;
  close(probe);
  if (rc == 0) return true;
  // EAGAIN: a live server whose backlog is full. ECONNREFUSED: nobody bound it.
  if (err == EAGAIN) return true;
  if (err == ECONNREFUSED || err == ENOENT) return false;
  return IoError("cannot probe existing socket", path, err);
}

// Clears the way for bind(): removes a stale socket file, refuses anything else.
Status ClaimPath(const sockaddr_un& address, const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return OkStatus();
    return IoError("cannot stat", path, errno);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return MakeError(errc::kBusy, path + " exists and is not a socket; not replacing it");
  }
  Result<bool> live = SomeoneListens(address, path);
  if (!live) return live.error();
  if (live.value()) {
    return MakeError(errc::kBusy, "a control server is already listening at " + path);
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return IoError("cannot remove stale socket", path, errno);
  }
  return OkStatus();
}

}  // namespace

Result<BoundSocket> BindControlSocket(const std::string& path) {
  Result<sockaddr_un> address = MakeAddress(path);
  if (!address) return address.error();
  if (Status s = EnsureParentDirectory(path); !s) return s.error();
  if (Status s = ClaimPath(address.value(), path); !s) return s.error();

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return IoError("cannot create socket for", path, errno);
  auto fail = [&](const std::string& what) {
    int err = errno;
    close(fd);
    return IoError(what, path, err);
  };

  // Mode 0600 without touching the process-wide umask (other threads create files):
  // Linux gives the file that bind() creates the mode of the socket's own inode, minus
  // the umask, so fchmod() the socket first. The chmod() after bind() is for kernels that
  // ignore that; it is still safe because nobody can connect before listen().
  if (fchmod(fd, 0600) != 0) return fail("cannot fchmod socket for");
  if (bind(fd, reinterpret_cast<const sockaddr*>(&address.value()), sizeof(sockaddr_un)) != 0) {
    return fail("cannot bind");
  }
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return fail("cannot stat");
  if ((st.st_mode & 07777) != 0600) {
    if (chmod(path.c_str(), 0600) != 0) return fail("cannot chmod");
  }
  return BoundSocket{fd, st.st_dev, st.st_ino};
}

void RemoveControlSocket(const std::string& path, const BoundSocket& bound) {
  struct stat st;
  if (lstat(path.c_str(), &st) == 0 && st.st_dev == bound.dev && st.st_ino == bound.ino) {
    unlink(path.c_str());
  }
}

}  // namespace migratefs::control
