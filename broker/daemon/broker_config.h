// migratefs-broker's configuration file (TOML). Reference: broker/daemon/README.md
// "Configuration". Every error names the file and the offending field.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "broker/daemon/marking.h"
#include "broker/policy/priority_class.h"

#include "migratefs/policy.h"
#include "migratefs/status.h"

namespace migratefs::broker {

// A link of this host whose counters the broker watches.
struct LinkConfig {
  std::string iface;          // /sys/class/net/<iface>/statistics/{tx,rx}_bytes
  double capacity_kbps = 0;   // per direction, KB/s (1 KB = 1000 bytes)
  std::string section;        // topology section this link is ("" = on every task's path)
  // Seed 003's workload reservation on this link (KB/s); both 0 = no reservation, the
  // classes then only order who yields (broker/policy/reservation.h).
  double workload_min_kbps = 0;
  double workload_max_kbps = 0;
  double workload_headroom_kbps = -1;  // margin above the observed workload; -1 = 5% of capacity

  bool has_reservation() const { return workload_max_kbps > 0; }
  double HeadroomKbps() const {
    return workload_headroom_kbps >= 0 ? workload_headroom_kbps : 0.05 * capacity_kbps;
  }
};

// Another broker this one may send release requests to.
struct PeerConfig {
  std::string name;     // its host name in the topology
  std::string address;  // its `listen` HOST:PORT
};

struct BrokerConfig {
  std::string host;              // this host's name in the topology
  std::string control_socket;    // the local migratefs control socket
  std::string listen;            // TCP HOST:PORT for peers and the scheduler ("" = none)
  std::string socket;            // local UNIX socket for monitoring/operators ("" = none)
  std::string keyfile;
  std::string key;               // the keyfile's bytes (trailing newline stripped)
  std::vector<PeerConfig> peers;
  std::vector<LinkConfig> links;
  double saturation_pct = 90;    // a link above this share of capacity is congested
  std::string sys_root = "/sys"; // tests point this at a fake tree
  std::string hypervisor_command;      // template: {vm} {source} {target} {target_host}
  double hypervisor_timeout_s = 600;
  double release_hold_s = 0;     // how long a release request holds backoff (0 = 2 periods)
  double peer_timeout_s = 2;     // connect+send+answer bound for peer messages
  double control_timeout_s = 5;  // per control-socket call (finish: 10x)
  double replay_window_s = 30;   // max clock skew / age of an authenticated message
  policy::Config policy;         // period, danger, warning, C, n, floors, vmm time
  double vmm_time_s = 0;         // the hypervisor's own time, added to Expression 1
  // Fleet caps (issue 11, item 5): at most this many migrations run at once (0 = no
  // cap; more are queued, started in class, deadline, submission order), and all of
  // this host's migrations together send at most budget_kbps (0 = no budget).
  int max_parallel = 0;
  double budget_kbps = 0;
  // Packet marking per class ([marking.high] dscp/so_priority); absent = none.
  std::map<policy::PriorityClass, Marking> marking;
  // Shared-section rate allocation (seed 000) among the brokers of a saturated
  // section: on by default; `rate_allocation = false` keeps Alg. 2 alone.
  bool rate_allocation = true;
  int allocation_rounds = 3;     // n of seed 000's model

  // Where a peer named `name` listens; "" when unknown.
  std::string PeerAddress(const std::string& name) const;
  double ReleaseHoldSeconds() const {
    return release_hold_s > 0 ? release_hold_s : 2 * policy.period_s;
  }
};

// Parses and validates; reads the keyfile (at least 16 bytes).
Result<BrokerConfig> LoadBrokerConfig(const std::string& path);
// The same from TOML text; keyfile paths are relative to the process, `origin` is
// only used in error messages.
Result<BrokerConfig> ParseBrokerConfig(const std::string& toml_text, const std::string& origin);

// Reads a pre-shared key file: its bytes minus trailing whitespace, >= 16 bytes.
Result<std::string> ReadKeyFile(const std::string& path);

}  // namespace migratefs::broker
