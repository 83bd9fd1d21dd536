#include "net/migration/receive_guard.h"

#include <cerrno>
#include <string>

#include "net/migration/refuse_writes_hook.h"
#include "net/migration/src_scan.h"
#include "net/image_identity.h"
#include "net/peer/postcopy_map.h"
#include "net/peer/receive_file.h"

#include <spdlog/spdlog.h>

namespace migratefs::migration {

void ReceiveGuard::OnReceiving(const std::string& name, dev_t dev, ino_t ino) {
  spdlog::info("receiving \"{}\": local writers refused until the source finishes", name);
  std::shared_ptr<ImageHook> hook;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = guards_[{dev, ino}];
    slot.name = name;
    if (slot.hook && hooks_.Find(dev, ino) == slot.hook) return;  // already guarded (start-up scan)
    slot.hook = hook = std::make_shared<RefuseWritesHook>(EBUSY);
    slot.postcopy.reset();
  }
  hooks_.Attach(dev, ino, hook);
}

Status ReceiveGuard::OnPostcopy(const std::string& name, dev_t dev, ino_t ino,
                                std::shared_ptr<net::PostcopyImage> image) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = guards_.find({dev, ino});
    if (it == guards_.end() || hooks_.Find(dev, ino) != it->second.hook)
      return MakeError(errc::kWrongState, name + " is not a copy being received here");
  }
  // The size the source handed over, while local writers are still refused.
  hooks_.RefreshKernelSize(dev, ino);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = guards_[{dev, ino}];
    slot.hook = image;
    slot.postcopy = image;
  }
  // Replaces the refusing hook; the mount drops what it cached of the file.
  hooks_.Attach(dev, ino, image);
  spdlog::info("postcopy of \"{}\": the VM's copy is here now; {} blocks still on the source", name,
               image->Info().blocks_remote);
  return OkStatus();
}

void ReceiveGuard::OnLostPostcopy(const std::string& name, dev_t dev, ino_t ino, const std::string& why) {
  spdlog::error("\"{}\" was in postcopy when this daemon stopped, and the map of the blocks still on its source is "
                "lost ({}): reads and writes fail with EIO until it is migrated again or its mark is removed",
                name, why);
  auto hook = std::make_shared<RefuseWritesHook>(EIO, EIO);
  {
    std::lock_guard<std::mutex> lock(mu_);
    guards_[{dev, ino}] = Guarded{name, hook, nullptr};
  }
  hooks_.Attach(dev, ino, hook);
}

void ReceiveGuard::OnRestoredPostcopy(const std::string& name, dev_t dev, ino_t ino,
                                      std::shared_ptr<net::PostcopyImage> image) {
  spdlog::warn("\"{}\" was in postcopy when this daemon stopped: taken over from its map, {} blocks still on the "
               "source (reads of them wait for it to reattach)",
               name, image->Info().blocks_remote);
  {
    std::lock_guard<std::mutex> lock(mu_);
    guards_[{dev, ino}] = Guarded{name, image, image};
  }
  hooks_.Attach(dev, ino, image);
}

std::shared_ptr<net::PostcopyImage> ReceiveGuard::FindPostcopy(dev_t dev, ino_t ino) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = guards_.find({dev, ino});
  return it == guards_.end() ? nullptr : it->second.postcopy;
}

std::vector<IncomingInfo> ReceiveGuard::Incoming() {
  std::vector<IncomingInfo> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [key, g] : guards_) {
    if (g.postcopy) {
      out.push_back(g.postcopy->Info());
      continue;
    }
    IncomingInfo info;
    info.image = g.name;
    info.state = "receiving";
    out.push_back(std::move(info));
  }
  return out;
}

void ReceiveGuard::OnReceiveEnded(const std::string& name, dev_t dev, ino_t ino, bool complete) {
  spdlog::info("receiving \"{}\" ended: {}", name, complete ? "complete, writable" : "cancelled");
  bool postcopy = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = guards_.find({dev, ino});
    postcopy = it != guards_.end() && it->second.postcopy;
  }
  // While writers are still refused; in postcopy the VM writes here, and the mount's
  // size is its own.
  if (!postcopy) hooks_.RefreshKernelSize(dev, ino);
  std::shared_ptr<ImageHook> hook;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = guards_.find({dev, ino});
    if (it == guards_.end()) return;
    hook = std::move(it->second.hook);
    guards_.erase(it);
  }
  hooks_.Detach(dev, ino, hook.get());
  // Detach also makes the mount drop what it cached of the file (size, pages): the
  // copy was written straight into SRC, and the hypervisor opens it through the mount.
}

Status ReceiveGuard::CheckReceivable(const std::string& name, dev_t dev, ino_t ino, const std::string& instance) {
  std::shared_ptr<ImageHook> attached = hooks_.Find(dev, ino);
  if (!attached) return OkStatus();
  std::shared_ptr<ImageHook> refuse;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = guards_.find({dev, ino});
    if (it == guards_.end() || it->second.hook != attached) {
      return MakeError(errc::kTargetBusy, name + " is being migrated away from this host or is a fenced source "
                                                 "copy here (release it first); nothing was changed");
    }
    if (!it->second.postcopy) return OkStatus();  // a partial copy we guard
    if (!it->second.postcopy->GiveBack(instance)) {
      return MakeError(errc::kTargetBusy, name + " is in postcopy here: the VM writes it; only its own source "
                                                 "reattaches (nothing was changed)");
    }
    // The hand-over failed half way and the VM never used this copy: it is a partial
    // copy being received again (the open goes on to mark it so).
    it->second.postcopy->DiscardMap();
    it->second.postcopy.reset();
    it->second.hook = refuse = std::make_shared<RefuseWritesHook>(EBUSY);
  }
  spdlog::warn("\"{}\": its source's hand-over failed half way and the VM never used the copy here: given back, "
               "received again",
               name);
  hooks_.Attach(dev, ino, refuse);
  return OkStatus();
}

size_t GuardPartialCopies(int src_dirfd, net::ReceiveObserver& guard, const std::string& state_dir) {
  size_t guarded = 0;
  ForEachMarkedFile(src_dirfd, net::kStateXattr,
                    [&](const std::string& name, const std::string& state, dev_t dev, ino_t ino, int fd) {
                      if (state == "postcopy") {
                        ++guarded;
                        if (state_dir.empty()) return guard.OnLostPostcopy(name, dev, ino, "no state_dir");
                        auto map = net::PostcopyMap::Open(state_dir, dev, ino, net::ReadImageIdentity(fd));
                        if (!map.ok()) return guard.OnLostPostcopy(name, dev, ino, map.error().message);
                        guard.OnRestoredPostcopy(name, dev, ino,
                                                 net::PostcopyImage::Restore(name, std::move(map.value())));
                        return;
                      }
                      if (state != "receiving") return;  // "incomplete": cancelled, nobody comes back
                      guard.OnReceiving(name, dev, ino);
                      ++guarded;
                    });
  return guarded;
}

}  // namespace migratefs::migration
