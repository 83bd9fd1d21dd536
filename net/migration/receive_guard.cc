#include "net/migration/receive_guard.h"

#include <cerrno>
#include <string>

#include "net/migration/refuse_writes_hook.h"
#include "net/migration/src_scan.h"
#include "net/peer/receive_file.h"

#include <spdlog/spdlog.h>

namespace migratefs::migration {

void ReceiveGuard::OnReceiving(const std::string& name, dev_t dev, ino_t ino) {
  spdlog::info("receiving \"{}\": local writers refused until the source finishes", name);
  std::shared_ptr<ImageHook> hook;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = guards_[{dev, ino}];
    if (slot && hooks_.Find(dev, ino) == slot) return;  // already guarded (start-up scan)
    slot = hook = std::make_shared<RefuseWritesHook>(EBUSY);
  }
  hooks_.Attach(dev, ino, hook);
}

void ReceiveGuard::OnReceiveEnded(const std::string& name, dev_t dev, ino_t ino, bool complete) {
  spdlog::info("receiving \"{}\" ended: {}", name, complete ? "complete, writable" : "cancelled");
  hooks_.RefreshKernelSize(dev, ino);  // while writers are still refused
  std::shared_ptr<ImageHook> hook;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = guards_.find({dev, ino});
    if (it == guards_.end()) return;
    hook = std::move(it->second);
    guards_.erase(it);
  }
  hooks_.Detach(dev, ino, hook.get());
  // Detach also makes the mount drop what it cached of the file (size, pages): the
  // copy was written straight into SRC, and the hypervisor opens it through the mount.
}

Status ReceiveGuard::CheckReceivable(const std::string& name, dev_t dev, ino_t ino) {
  std::shared_ptr<ImageHook> attached = hooks_.Find(dev, ino);
  if (!attached) return OkStatus();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = guards_.find({dev, ino});
  if (it != guards_.end() && it->second == attached) return OkStatus();  // a partial copy we guard
  return MakeError(errc::kTargetBusy, name + " is being migrated away from this host or is a fenced source "
                                             "copy here (release it first); nothing was changed");
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
