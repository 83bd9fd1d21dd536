#include "net/migration/receive_guard.h"

#include <cerrno>
#include <string>

#include "net/migration/refuse_writes_hook.h"
#include "net/migration/src_scan.h"
#include "net/receive_file.h"

#include <spdlog/spdlog.h>

namespace migratefs::migration {

void ReceiveGuard::OnReceiving(const std::string& name, dev_t dev, ino_t ino) {
  spdlog::info("receiving \"{}\": local writers refused until the source finishes", name);
  hooks_.Attach(dev, ino, std::make_shared<RefuseWritesHook>(EBUSY));
}

void ReceiveGuard::OnReceiveEnded(const std::string& name, dev_t dev, ino_t ino, bool complete) {
  spdlog::info("receiving \"{}\" ended: {}", name, complete ? "complete, writable" : "cancelled");
  hooks_.RefreshKernelSize(dev, ino);  // while writers are still refused
  hooks_.Detach(dev, ino);
  // Detach also makes the mount drop what it cached of the file (size, pages): the
  // copy was written straight into SRC, and the hypervisor opens it through the mount.
}

size_t GuardPartialCopies(int src_dirfd, net::ReceiveObserver& guard) {
  size_t guarded = 0;
  ForEachMarkedFile(src_dirfd, net::kStateXattr,
                    [&](const std::string& name, const std::string& state, dev_t dev, ino_t ino, int) {
                      if (state != "receiving") return;  // "incomplete": cancelled, nobody comes back
                      guard.OnReceiving(name, dev, ino);
                      ++guarded;
                    });
  return guarded;
}

}  // namespace migratefs::migration
