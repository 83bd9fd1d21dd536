#include "net/migration/receive_guard.h"

#include <cerrno>

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

}  // namespace migratefs::migration
