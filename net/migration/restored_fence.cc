#include "net/migration/restored_fence.h"

#include <sys/xattr.h>

#include <cerrno>

namespace migratefs::migration {

int PersistFence(int fd, const std::string& target) {
  return ::fsetxattr(fd, kFenceXattr, target.data(), target.size(), 0) == 0 ? 0 : errno;
}

namespace {

int RemoveMark(int fd, const char* name) {
  if (::fremovexattr(fd, name) == 0 || errno == ENODATA) return 0;
  return errno;
}

}  // namespace

int ClearFence(int fd) {
  if (const int err = RemoveMark(fd, kPostcopyXattr); err != 0 && err != ENOTSUP) return err;
  return RemoveMark(fd, kFenceXattr);
}

int PersistPostcopyMark(int fd, const std::string& journal_doc) {
  return ::fsetxattr(fd, kPostcopyXattr, journal_doc.data(), journal_doc.size(), 0) == 0 ? 0 : errno;
}

int ClearPostcopyMark(int fd) { return RemoveMark(fd, kPostcopyXattr); }

}  // namespace migratefs::migration
