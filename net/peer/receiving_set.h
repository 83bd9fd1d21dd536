// Which session of a peer server holds which image being received (invariant I6 on the
// target: two connections never write one file), and when a new connection may take an
// image over from an old one.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace migratefs::net {

// What a session that holds an image exposes to a session that wants the same image.
class ImageHolder {
 public:
  virtual ~ImageHolder() = default;
  virtual std::chrono::milliseconds Idle() const = 0;  // since its peer last sent anything
  virtual void Stop() = 0;                              // any thread; ends that session
  // The instance id of the source daemon on the other end ("" = not known yet).
  virtual std::string SourceInstance() const = 0;
};

// Images currently open for receiving by any session of one server, so two sessions
// never write the same file (invariant I6 on the target). Thread-safe.
//
// Takeover: when the source loses a connection without the target noticing (a cut
// link leaves the target's socket half-open for as long as TCP keepalive takes), the
// source reconnects and reopens its images. If the holder has heard nothing from its
// peer for `idle_takeover`, it is presumed dead: it is stopped (its in-flight disk
// writes complete first, so nothing older lands after the new session's writes) and
// the image passes to the new session. A holder that is still active keeps it (busy),
// unless it is a connection of the very source daemon that now asks again (the same
// instance id): a source has one connection per migration, so its older one is dead
// or abandoned, and the takeover happens at once (issue 17.3: a reconnecting source
// was refused "busy" for 5 s after every cut).
class ReceivingSet {
 public:
  enum class Claim { kOk, kBusy };
  // `instance`: the asking session's source instance id ("" = unknown).
  Claim Acquire(dev_t dev, ino_t ino, ImageHolder* me, const std::string& instance,
                std::chrono::milliseconds idle_takeover, std::chrono::milliseconds wait);
  void Release(dev_t dev, ino_t ino, ImageHolder* me);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::pair<dev_t, ino_t>, ImageHolder*> held_;
};

}  // namespace migratefs::net
