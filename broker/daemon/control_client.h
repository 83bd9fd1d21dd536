// The broker's view of its local migratefs daemon: the control-socket ops it needs
// (DESIGN.md "Control socket"; names fixed in include/migratefs/control_protocol.h).
// An interface so that the broker's logic is tested against an in-memory fake and
// the daemon against a scripted socket; SocketControlClient is the real one.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "broker/daemon/line_socket.h"
#include "broker/daemon/marking.h"
#include "migratefs/migration_service.h"
#include "migratefs/status.h"

namespace migratefs::broker {

class ControlClient {
 public:
  virtual ~ControlClient() = default;
  // Every call answers within the client's timeout; an unreachable daemon is
  // peer_unreachable, a refusal carries the daemon's error code and message.
  // `marking` adds the optional "dscp"/"so_priority" fields (marking.h); an empty
  // Marking sends today's request unchanged. `network_kbps` > 0 starts the migration
  // under that network limit (its first byte obeys it, not the next period's).
  virtual Result<std::string> Start(const std::vector<std::string>& images,
                                    const std::string& target, const Marking& marking,
                                    uint64_t network_kbps = 0) = 0;
  virtual Status SetNetworkLimit(const std::string& id, uint64_t kbps) = 0;  // 0 = none
  virtual Status SetDiskLimit(const std::string& id, uint64_t kbps) = 0;     // 0 = none
  // Fills Progress from the answer; `kbps` is the rate of the asked kind.
  virtual Result<Progress> QueryProgress(const std::string& id, RateKind what) = 0;
  virtual Result<bool> QueryCompletion(const std::string& id) = 0;
  virtual Status Finish(const std::string& id) = 0;
  virtual Status Cancel(const std::string& id) = 0;
};

// JSON lines over the daemon's UNIX control socket, one connection per call (a broker
// calls a few times per period; reconnecting makes a daemon restart invisible).
// `timeout` bounds each call; finish gets `finish_timeout` (it waits for the peer).
std::unique_ptr<ControlClient> NewSocketControlClient(std::string socket_path, Millis timeout,
                                                      Millis finish_timeout);

}  // namespace migratefs::broker
