#include "net/image_identity.h"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <sys/xattr.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace migratefs::net {

namespace {
constexpr size_t kIdBytes = 16;
constexpr size_t kMaxStored = 64;  // wire::kMaxIdentityLength: longer values are not ours
}  // namespace

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)
    throw std::runtime_error("RAND_bytes failed");  // no entropy: nothing sensible to do
  return out;
}

std::string ReadImageIdentity(int fd) {
  char buf[kMaxStored + 1];
  const ssize_t n = ::fgetxattr(fd, kIdentityXattr, buf, sizeof buf);
  if (n <= 0 || static_cast<size_t>(n) > kMaxStored) return "";
  return std::string(buf, static_cast<size_t>(n));
}

int WriteImageIdentity(int fd, const std::string& identity) {
  return ::fsetxattr(fd, kIdentityXattr, identity.data(), identity.size(), 0) == 0 ? 0 : errno;
}

Result<std::string> EnsureImageIdentity(int fd) {
  if (std::string id = ReadImageIdentity(fd); !id.empty()) return id;
  static const char kHex[] = "0123456789abcdef";
  std::string id;
  for (unsigned char c : RandomBytes(kIdBytes)) {
    id += kHex[c >> 4];
    id += kHex[c & 15];
  }
  // XATTR_CREATE: if two starts race, both end up with whichever id landed first.
  if (::fsetxattr(fd, kIdentityXattr, id.data(), id.size(), XATTR_CREATE) == 0) return id;
  const int err = errno;
  if (err == EEXIST) return ReadImageIdentity(fd);
  if (err == ENOTSUP) {
    spdlog::warn("image has no identity (no user xattrs on this file system): the target accepts it only "
                 "into a new file or with overwrite");
    return std::string();
  }
  return MakeError(errc::kIo, std::string("cannot stamp ") + kIdentityXattr + ": " + std::strerror(err));
}

}  // namespace migratefs::net
