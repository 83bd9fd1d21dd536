// Congestion from the host's own link counters: the bytes a link moved per second,
// from /sys/class/net/IFACE/statistics/{tx,rx}_bytes deltas between two samples,
// against its configured capacity. A link is saturated when either direction is above
// `saturation_pct` of capacity (links are full duplex: each direction has the capacity).
// The /sys root is injectable so tests drive it with fake counter files.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "broker/daemon/broker_config.h"

namespace migratefs::broker {

struct LinkSample {
  std::string iface;
  std::string section;       // "" = on every task's path
  double capacity_kbps = 0;
  double tx_kbps = 0;        // over the last interval; 0 before two samples
  double rx_kbps = 0;
  bool readable = false;     // both counters could be read this time
  bool saturated = false;
};

class LinkMonitor {
 public:
  LinkMonitor(std::vector<LinkConfig> links, std::string sys_root, double saturation_pct);

  // Reads every counter at time `now_s` (seconds, any monotonic origin) and returns one
  // sample per configured link, in config order. The first call, an unreadable counter,
  // a counter that went backwards (interface re-created) or a zero interval gives rate 0
  // and not saturated; the next good pair of readings measures again.
  const std::vector<LinkSample>& Sample(double now_s);
  const std::vector<LinkSample>& last() const { return samples_; }

 private:
  struct Previous {
    std::optional<uint64_t> tx, rx;
    double at_s = 0;
  };
  std::optional<uint64_t> ReadCounter(const std::string& iface, const char* name) const;

  std::vector<LinkConfig> links_;
  std::string sys_root_;
  double saturation_pct_;
  std::vector<Previous> previous_;
  std::vector<LinkSample> samples_;
};

}  // namespace migratefs::broker
