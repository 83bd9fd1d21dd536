// One authenticated peer connection on the receiving side (see peer_server.h).
//
// Threading: Run() is the session's own thread. It runs the handshake (blocking, with
// a deadline), then an Asio loop that reads frames, answers them, and drives one
// io_uring ring whose completions arrive through an eventfd. Stop() may be called from
// any thread; Run() then returns after every in-flight disk operation completed.
//
// Per frame: the header is validated before any payload buffer is allocated, the
// checksum before anything is acted on, and the request (handle, bounds, payload
// length) before anything is written. Request errors get an Error frame and the
// session goes on; protocol violations get an Error frame with request id 0 and end
// the session. A session that ends keeps its partial files (marked receiving, for a
// resume) and does not call ReceiveObserver::OnReceiveEnded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "net/peer/handshake.h"
#include "net/peer/peer_server.h"
#include "net/peer/receiving_set.h"

namespace migratefs::net {

struct SessionConfig {
  int src_dirfd = -1;
  std::string key;  // empty = insecure
  ReceiveObserver* observer = nullptr;
  ReceivingSet* receiving = nullptr;
  std::string instance_id;  // this daemon's (PeerServerOptions::instance_id)
  std::string state_dir;    // PeerServerOptions::state_dir
  std::chrono::milliseconds handshake_timeout{5000};
  unsigned ring_depth = 64;                   // io_uring operations in flight (>= 8)
  uint64_t max_buffered_bytes = 256ull << 20; // stop reading the socket above this
  size_t max_pending_ops = 16384;             // ... or above this many queued operations
  size_t max_images = 1024;                   // open images per session
  std::chrono::milliseconds idle_takeover{5000};  // see ReceivingSet
  std::chrono::milliseconds takeover_wait{10000}; // how long a takeover may wait for the holder
  // Test seam: submit each batch of ready disk operations in reverse order, so that a
  // test can show the result depends only on the ordering rules, not on the kernel
  // happening to apply a batch in submission order.
  bool test_reverse_batches = false;
  // Test seam: asked before each data write is issued; a non-zero errno fails that
  // write as if the disk had returned it (nothing is written).
  std::function<int(const std::string& image, uint64_t offset, uint64_t length)> test_write_errno;
};

class ReceiveSession {
 public:
  // Takes ownership of the connected socket `fd`. `monitor` (may be null, must outlive
  // the session) hears of the handshake's progress and may refuse the peer once it is
  // authenticated (net/peer/handshake.h; the PeerServer's admission control).
  ReceiveSession(int fd, const SessionConfig& cfg, HandshakeMonitor* monitor = nullptr);
  ~ReceiveSession();
  ReceiveSession(const ReceiveSession&) = delete;
  ReceiveSession& operator=(const ReceiveSession&) = delete;

  void Run();
  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace migratefs::net
