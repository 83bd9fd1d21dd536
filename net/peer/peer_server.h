// Target side of the peer protocol: accepts peers on listen=HOST:PORT, authenticates
// them, and writes the images they send into SRC (and nowhere else: invariant I5).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

#include "migratefs/status.h"
#include "net/socket_marking.h"

namespace migratefs::net {

struct PeerServerOptions {
  std::string listen;     // "HOST:PORT" (port 0 = pick one; see PeerServer::port())
  std::string key;        // pre-shared key; empty only with insecure
  bool insecure = false;
  int src_dirfd = -1;     // received images are created under this directory only
  // Added by the protocol work (defaults are what the daemon wants):
  // Authenticated sessions at once; a further peer is refused with Error(busy) once
  // it has proved its key. Connections still in their handshake do not count.
  unsigned max_sessions = 64;
  // Connections not authenticated yet, of each kind at once: silent ones (sent
  // nothing yet) and talking ones (mid-handshake). A newcomer of a kind beyond this
  // pushes one of its kind out (see "Admission" below).
  unsigned max_unauthenticated = 64;
  // A connection that has not authenticated this long after its accept is dropped.
  std::chrono::milliseconds handshake_timeout{5000};
  // An image held by a session whose peer sent nothing for this long may be taken over
  // by a new connection that opens it (a source reconnecting after a cut link while
  // the old socket is still half-open here); an active holder answers busy.
  std::chrono::milliseconds idle_takeover{5000};
  // This daemon's instance id (wire::kInstanceIdSize random bytes, made at start): an
  // OpenImage that carries it comes from this very process, a start to itself, and is
  // refused with target_is_self. Empty: no such check (tests of the server alone).
  std::string instance_id;
  // DSCP and socket priority of what this side sends back (acks, hash replies, errors;
  // issue 12, item 3). Put on the listening socket, so the SYN-ACKs are marked and
  // accepted sockets inherit it, and once more on each accepted socket. The per-
  // migration marking a source asks for in `start` is not known here: it marks only
  // the source-to-target direction. A marking the kernel refuses fails Start.
  SocketMarking marking;
  // Where the maps of copies in postcopy are kept (net/peer/postcopy_map.h), so that a
  // restarted daemon takes them over. Empty: not kept (a restart guards them with EIO).
  std::string state_dir;
};

// The daemon's reaction to images being received: it attaches a hook that refuses
// write opens through the mount (I6) while a copy is incomplete.
class PostcopyImage;  // net/peer/postcopy_image.h

class ReceiveObserver {
 public:
  virtual ~ReceiveObserver() = default;
  virtual void OnReceiving(const std::string& name, dev_t dev, ino_t ino) = 0;
  // complete = FinishImage; false after AbortImage with keep_partial (removed copies
  // are reported too, before the unlink).
  virtual void OnReceiveEnded(const std::string& name, dev_t dev, ino_t ino, bool complete) = 0;
  // Asked before an existing file is received into by source daemon `instance`: OK, or
  // why not (target_busy when the file is a migration source or a fenced copy on this
  // host, or the VM's copy in postcopy). A copy in postcopy that this very source
  // handed over and that the VM never used is given back (PostcopyImage::GiveBack):
  // its hand-over failed half way and the source goes on with the pre-copy.
  virtual Status CheckReceivable(const std::string& name, dev_t dev, ino_t ino, const std::string& instance) {
    return OkStatus();
  }
  // Hybrid switch-over (wire kPostcopy), on the session thread: the copy becomes the
  // VM's, with `image` as its hook from now on (local writers allowed, reads of remote
  // blocks fetch). An error changes nothing (the source is told and may retry).
  virtual Status OnPostcopy(const std::string& name, dev_t dev, ino_t ino, std::shared_ptr<PostcopyImage> image) {
    return MakeError(errc::kWrongState, "this daemon cannot take a copy over in postcopy");
  }
  // The postcopy of (dev, ino) under way here (a reconnecting source reattaches), or null.
  virtual std::shared_ptr<PostcopyImage> FindPostcopy(dev_t dev, ino_t ino) { return nullptr; }
  // At start-up (GuardPartialCopies): a file still marked "postcopy", whose map of the
  // blocks it lacks died with the daemon that held it (`why`).
  virtual void OnLostPostcopy(const std::string& name, dev_t dev, ino_t ino, const std::string& why) {}
  // At start-up: a file still marked "postcopy" whose map an earlier daemon left
  // (postcopy_map.h): `image` is its postcopy, taken over; its source reattaches.
  virtual void OnRestoredPostcopy(const std::string& name, dev_t dev, ino_t ino,
                                  std::shared_ptr<PostcopyImage> image) {}
};

// Admission: why strangers cannot keep a real peer out, nor pin the daemon's memory.
// - A connection is a stranger until its handshake has verified the peer's proof of
//   the key (insecure: until it sent a valid hello). Strangers and sessions are
//   counted apart: max_sessions bounds authenticated sessions only, so no number of
//   strangers makes a peer that proves its key hear busy.
// - A silent stranger (has sent nothing yet) waits in the acceptor's event loop: one
//   descriptor, no thread, no session. With its first bytes it becomes a talking
//   stranger: it gets its session thread, whose handshake reads only small handshake
//   frames (handshake.h). Either way a stranger has handshake_timeout from its accept
//   to authenticate.
// - Each kind has its own cap, max_unauthenticated. A newcomer beyond it is not
//   refused: it pushes out one stranger of its own kind, chosen among those from the
//   source address holding the most of them, the one that has gone longest without
//   progress (accept, first bytes, each handshake frame read). So silent floods only
//   ever displace each other; a flood from one address displaces its own connections
//   before anyone else's; and a real peer, which sends its hello at once and
//   authenticates within milliseconds, is displaced only if max_unauthenticated newer
//   strangers of its kind make progress between two of its steps. Refusing the
//   newcomer instead would let a flood that came first keep every later peer out, as
//   when strangers held sessions.
// - Out of resources (accept failing with EMFILE/ENFILE/ENOBUFS/ENOMEM, no descriptor
//   for a session's event loop, no thread): the connection concerned is refused
//   (resource_exhausted, when it can still be told), accepting pauses for 200 ms, and
//   everything else carries on. No exception leaves the acceptor or a session thread.
class PeerServer {
 public:
  virtual ~PeerServer() = default;  // stops: closes the listener and every session
  // Errors: kInvalidArgument (bad address, key missing without insecure), kIo (bind).
  static Result<std::unique_ptr<PeerServer>> Start(const PeerServerOptions& opts, ReceiveObserver* observer);
  virtual uint16_t port() const = 0;
};

}  // namespace migratefs::net
