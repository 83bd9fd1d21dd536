// Invariant I6 on the target: while a copy is being received (until the source's
// finish or cancel), opening it for writing through this
// daemon's mount fails with EBUSY, and it cannot be renamed or removed there. Reads
// are allowed (an operator may inspect it).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "migratefs/migration_service.h"
#include "net/peer/postcopy_image.h"

#include "migratefs/image_hook.h"
#include "net/peer/peer_server.h"

namespace migratefs::migration {

class ReceiveGuard : public net::ReceiveObserver {
 public:
  explicit ReceiveGuard(HookRegistry& hooks) : hooks_(hooks) {}
  void OnReceiving(const std::string& name, dev_t dev, ino_t ino) override;
  void OnReceiveEnded(const std::string& name, dev_t dev, ino_t ino, bool complete) override;
  // target_busy when another hook is on the file: it is a migration source or a
  // fenced copy of this daemon (the target of a start to itself, or a copy that was
  // migrated away and not released).
  Status CheckReceivable(const std::string& name, dev_t dev, ino_t ino, const std::string& instance) override;
  // Hybrid copy: the postcopy image replaces the refusing hook (I6 flips to the target).
  Status OnPostcopy(const std::string& name, dev_t dev, ino_t ino, std::shared_ptr<net::PostcopyImage> image) override;
  std::shared_ptr<net::PostcopyImage> FindPostcopy(dev_t dev, ino_t ino) override;
  void OnLostPostcopy(const std::string& name, dev_t dev, ino_t ino, const std::string& why) override;
  void OnRestoredPostcopy(const std::string& name, dev_t dev, ino_t ino,
                          std::shared_ptr<net::PostcopyImage> image) override;
  // Every copy guarded now: being received, or in postcopy (the "incoming" request).
  std::vector<IncomingInfo> Incoming();

 private:
  HookRegistry& hooks_;
  std::mutex mu_;
  // The hook each guarded copy got, so the end of a receive removes that one only; a
  // copy guarded at start-up (GuardPartialCopies) keeps its hook when its source
  // reconnects.
  struct Guarded {
    std::string name;
    std::shared_ptr<ImageHook> hook;
    std::shared_ptr<net::PostcopyImage> postcopy;  // set from the switch-over on
  };
  std::map<std::pair<dev_t, ino_t>, Guarded> guards_;
};

// At daemon start, before any peer is accepted: every regular file under SRC still
// marked "receiving" (net::kStateXattr) is a partial copy whose source may come back
// to resume it, so it is guarded right away instead of when that source reconnects.
// Returns how many were found. A file marked "postcopy" was the VM's copy in a hybrid
// copy when this daemon stopped: its postcopy is taken over from the map an earlier
// daemon left in `state_dir` (net/peer/postcopy_map.h; its source reattaches and the VM
// only waited). Without a map of that copy (a reboot emptied /run, no state_dir) it is
// guarded with reads and writes failing with EIO (never holes shown as data) until an
// operator decides (the source still holds every block: migrate again, or remove the
// mark if the copy is known to be whole). The guard ends as for any receive: the source's finish
// or cancel; an operator who gives up on a source removes the mark (setfattr -x
// user.migratefs.state FILE in SRC) and restarts the daemon. Symlinks are not followed;
// the walk stops 16 directories deep.
size_t GuardPartialCopies(int src_dirfd, net::ReceiveObserver& guard, const std::string& state_dir);

}  // namespace migratefs::migration
