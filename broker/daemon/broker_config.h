// migratefs-broker's configuration file (TOML). Reference: broker/daemon/README.md
// "Configuration". Every error names the file and the offending field.
#pragma once

#include <string>
#include <vector>

#include "migratefs/policy.h"
#include "migratefs/status.h"

namespace migratefs::broker {

// A link of this host whose counters the broker watches.
struct LinkConfig {
  std::string iface;          // /sys/class/net/<iface>/statistics/{tx,rx}_bytes
  double capacity_kbps = 0;   // per direction, KB/s (1 KB = 1000 bytes)
  std::string section;        // topology section this link is ("" = on every task's path)
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
