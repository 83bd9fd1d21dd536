#include "net/migration/restored_fence.h"

#include <sys/xattr.h>

#include <cerrno>

namespace migratefs::migration {

int PersistFence(int fd, const std::string& target) {
  return ::fsetxattr(fd, kFenceXattr, target.data(), target.size(), 0) == 0 ? 0 : errno;
}

int ClearFence(int fd) {
  if (::fremovexattr(fd, kFenceXattr) == 0 || errno == ENODATA) return 0;
  return errno;
}

}  // namespace migratefs::migration
