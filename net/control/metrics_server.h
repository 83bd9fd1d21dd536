// Read-only Prometheus endpoint (`-o metrics=HOST:PORT`): HTTP/1.0 `GET /metrics`
// answers MigrationService::List() in the Prometheus text format; every other request
// gets 404. It can change nothing: it only ever calls List().
//
// Robustness: request head limited to 8 KiB and 5 s, at most 16 connections (more are
// closed at once), one request per connection, its own I/O thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "migratefs/migration_service.h"
#include "migratefs/status.h"
#include "net/control/host_port.h"

namespace migratefs::control {

// The exposition text for `migrations`:
//   migratefs_migration_info{id,target,images} 1
//   migratefs_phase{id,phase} 1 for the current phase, 0 for the others
//   migratefs_bytes_sent_total{id}, migratefs_bytes_mirrored_total{id} (counters),
//   migratefs_bytes_total{id},
//   migratefs_bytes_left{id}, migratefs_dirty_blocks{id}, migratefs_dirty_kbps{id},
//   migratefs_network_kbps{id}, migratefs_disk_kbps{id}, migratefs_eta_seconds{id},
//   migratefs_network_limit_kbps{id}, migratefs_disk_limit_kbps{id} (0 = none),
//   migratefs_completed{id}
// Rates are KB/s (1 KB = 1000 bytes), as everywhere in the API.
std::string RenderMetrics(const std::vector<MigrationInfo>& migrations);

class MetricsServer {
 public:
  // `host_port` as SplitHostPort takes it. Errors: invalid_argument, io_error (bind).
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& host_port,
                                                      MigrationService* service);
  // Port 0 binds an ephemeral port (tests); see port().
  static Result<std::unique_ptr<MetricsServer>> Start(const HostPort& address,
                                                      MigrationService* service);
  ~MetricsServer();  // Stop()
  void Stop();       // idempotent; after it returns the service is not called again
  uint16_t port() const;

  class Impl;

 private:
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace migratefs::control
