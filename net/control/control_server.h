// The daemon's control socket: JSON lines over a UNIX stream socket (DESIGN.md
// "Control socket"; every op and answer is in net/control/README.md).
//
// Guarantees, whatever clients do:
//  - The socket file is created with mode 0600; Start() refuses a path where a live
//    server answers and replaces a stale socket left by a crashed daemon.
//  - Per connection: one answer line per request line, in request order. Requests on one
//    connection run one at a time; different connections do not wait for each other.
//  - A line over kMaxRequestLineBytes gets a too_large answer and the connection closes.
//    A line not completed within `line_timeout` of its first byte, or an answer the
//    client does not read within `write_timeout`, gets the connection dropped.
//  - Over `max_connections`, a new connection gets one busy error line and is closed.
//  - finish and verify run on a worker pool, so a slow peer never stalls the I/O thread;
//    profile (which blocks for as long as asked) on a second pool of its own.
//  - `events` turns the connection into a stream: first {"ok":true,"events":true}, then
//    one event line per MigrationService event, in order, until the client hangs up.
//    A reader that falls `max_queued_events` behind gets a final too_large error line and
//    is disconnected; the service never waits for it.
//  - Nothing a client sends reaches the service unless it parsed and validated cleanly.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "migratefs/migration_service.h"
#include "migratefs/status.h"

namespace migratefs::control {

struct ControlServerOptions {
  std::chrono::milliseconds line_timeout{10'000};   // first byte of a line -> its '\n'
  std::chrono::milliseconds write_timeout{10'000};  // one answer or event batch written
  // A connection with no partial line and no request in progress is closed after this
  // long; long enough for a broker that polls every minute. Zero = never.
  std::chrono::milliseconds idle_timeout{600'000};
  size_t max_connections = 256;
  size_t max_queued_events = 1024;  // per events subscriber
  unsigned worker_threads = 2;      // for finish / verify
  // For `profile`, which blocks for its "seconds" (up to an hour): a pool of its own, so
  // finish and verify never wait behind it. One more profile than this at once is
  // answered busy.
  unsigned long_threads = 4;
};

class ControlServer {
 public:
  // Binds `path`, starts the I/O thread and the worker pool. `service` must outlive the
  // server. Errors: invalid_argument (path too long), busy (live server there, or the
  // path is not a socket), io_error.
  static Result<std::unique_ptr<ControlServer>> Start(const std::string& path,
                                                      MigrationService* service,
                                                      ControlServerOptions options = {});
  ~ControlServer();  // Stop()

  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Closes every connection and event stream, waits for running finish/verify calls,
  // joins the threads and removes the socket file. Idempotent. After it returns the
  // service is never called again.
  void Stop();

  const std::string& path() const;
  size_t connection_count() const;  // open connections (tests, metrics)

  class Impl;

 private:
  explicit ControlServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace migratefs::control
