// Target side of the peer protocol: accepts peers on listen=HOST:PORT, authenticates
// them, and writes the images they send into SRC (and nowhere else: invariant I5).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

#include "migratefs/status.h"

namespace migratefs::net {

struct PeerServerOptions {
  std::string listen;     // "HOST:PORT" (port 0 = pick one; see PeerServer::port())
  std::string key;        // pre-shared key; empty only with insecure
  bool insecure = false;
  int src_dirfd = -1;     // received images are created under this directory only
  // Added by the protocol work (defaults are what the daemon wants):
  unsigned max_sessions = 64;                        // further connections get Error(busy)
  std::chrono::milliseconds handshake_timeout{5000}; // a peer that stalls before auth is dropped
  // An image held by a session whose peer sent nothing for this long may be taken over
  // by a new connection that opens it (a source reconnecting after a cut link while
  // the old socket is still half-open here); an active holder answers busy.
  std::chrono::milliseconds idle_takeover{5000};
  // This daemon's instance id (wire::kInstanceIdSize random bytes, made at start): an
  // OpenImage that carries it comes from this very process, a start to itself, and is
  // refused with target_is_self. Empty: no such check (tests of the server alone).
  std::string instance_id;
};

// The daemon's reaction to images being received: it attaches a hook that refuses
// write opens through the mount (I6) while a copy is incomplete.
class ReceiveObserver {
 public:
  virtual ~ReceiveObserver() = default;
  virtual void OnReceiving(const std::string& name, dev_t dev, ino_t ino) = 0;
  // complete = FinishImage; false after AbortImage with keep_partial (removed copies
  // are reported too, before the unlink).
  virtual void OnReceiveEnded(const std::string& name, dev_t dev, ino_t ino, bool complete) = 0;
  // Asked before an existing file is received into: OK, or why not (target_busy when
  // the file is a migration source or a fenced copy on this host).
  virtual Status CheckReceivable(const std::string& name, dev_t dev, ino_t ino) { return OkStatus(); }
};

class PeerServer {
 public:
  virtual ~PeerServer() = default;  // stops: closes the listener and every session
  // Errors: kInvalidArgument (bad address, key missing without insecure), kIo (bind).
  static Result<std::unique_ptr<PeerServer>> Start(const PeerServerOptions& opts, ReceiveObserver* observer);
  virtual uint16_t port() const = 0;
};

}  // namespace migratefs::net
