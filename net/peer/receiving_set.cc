#include "net/peer/receiving_set.h"

#include <spdlog/spdlog.h>

namespace migratefs::net {

ReceivingSet::Claim ReceivingSet::Acquire(dev_t dev, ino_t ino, ImageHolder* me, const std::string& instance,
                                          std::chrono::milliseconds idle_takeover, std::chrono::milliseconds wait) {
  const auto key = std::make_pair(dev, ino);
  std::unique_lock<std::mutex> lk(mu_);
  auto it = held_.find(key);
  if (it == held_.end() || it->second == me) {
    held_[key] = me;
    return Claim::kOk;
  }
  const bool same_source = !instance.empty() && it->second->SourceInstance() == instance;
  if (!same_source && it->second->Idle() < idle_takeover) return Claim::kBusy;
  // The holder is presumed dead. Stop it while we hold mu_: it cannot be destroyed
  // meanwhile, because it must Release() (which takes mu_) first.
  if (same_source) {
    spdlog::warn("peer server: the source reconnected; its older session gives the image up");
  } else {
    spdlog::warn("peer server: taking an image over from a session idle for {} ms", it->second->Idle().count());
  }
  it->second->Stop();
  if (!cv_.wait_for(lk, wait, [&] { return held_.find(key) == held_.end(); })) return Claim::kBusy;
  held_[key] = me;
  return Claim::kOk;
}

void ReceivingSet::Release(dev_t dev, ino_t ino, ImageHolder* me) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = held_.find({dev, ino});
    if (it == held_.end() || it->second != me) return;
    held_.erase(it);
  }
  cv_.notify_all();
}

}  // namespace migratefs::net
