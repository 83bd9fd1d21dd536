#include "net/peer/receive_admission.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>

#include "net/image_identity.h"

namespace migratefs::net {

bool OpenForWritingElsewhere(int fd) {
  if (::fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
    ::fcntl(fd, F_SETLEASE, F_UNLCK);
    return false;
  }
  if (errno == EAGAIN) return true;  // a writable descriptor exists (or a write lease)
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true))
    spdlog::warn("peer server: this file system has no leases ({}); local writers of a received file are "
                 "not detected",
                 ErrnoText(errno));
  return false;
}

Status AdmitReceiveFile(const ReceiveFile& f, const std::string& name, const ReceiveClaim& claim) {
  if (f.created) return OkStatus();
  if (f.nlink > 1) {
    return MakeError(errc::kBadName, name + " has " + std::to_string(f.nlink) +
                                         " hard links on the target; a migration never writes into a file "
                                         "that has other names");
  }
  if (OpenForWritingElsewhere(f.fd)) {
    return MakeError(errc::kTargetBusy, name + " is open for writing on the target (a local VM?); nothing was "
                                              "changed");
  }
  const std::string have = ReadImageIdentity(f.fd);
  if (!claim.identity.empty() && have == claim.identity) return OkStatus();  // a copy of this very image
  if (claim.overwrite) {
    spdlog::warn("peer server: {}: replacing an existing file (identity \"{}\", incoming \"{}\"): overwrite "
                 "requested",
                 name, have, claim.identity);
    return OkStatus();
  }
  return MakeError(errc::kTargetExists,
                   name + " already exists on the target and is not a copy of this image (identity " +
                       (have.empty() ? std::string("none") : have) + ", incoming " +
                       (claim.identity.empty() ? std::string("none") : claim.identity) +
                       "); nothing was changed. Start with \"overwrite\": true to replace it");
}

}  // namespace migratefs::net
