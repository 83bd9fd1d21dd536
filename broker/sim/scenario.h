// A simulated share-nothing cloud and its migration workload, read from TOML.
// broker/sim/README.md documents every field; this struct keeps the file's names
// (with units converted to bytes, bytes/s and seconds where the name says so).
#pragma once

#include <cstdint>
#include <string>

#include "migratefs/policy.h"
#include "migratefs/status.h"

namespace migratefs::sim {

enum class PolicyKind { kNone, kBroker };
// What the broker's shouldBackOff() sees as congestion on the path.
enum class Congestion {
  kSaturated,  // any link on the path saturated during the task's last period
  kSla,        // a saturated link on a machine in shortage (an SLA failure)
};

struct Scenario {
  // [run]
  uint64_t seed = 1;
  PolicyKind policy = PolicyKind::kBroker;
  double tick_s = 1;            // fluid-model time step
  double drain_limit_s = 86400; // stop this long after the last arrival at the latest

  // [topology] hosts -> ToR switches -> non-blocking core; full-duplex links.
  uint64_t machines = 500;
  uint64_t hosts_per_tor = 25;
  double link_bps = 1.25e9;     // link_gbit_s
  double tor_oversubscription = 1;  // ToR uplink = hosts_per_tor * link / this

  // [background] tenants' demand per link direction, fraction of capacity, redrawn
  // every period from a Gaussian and clamped to [0, 1].
  double host_mean = 0.5, host_stddev = 0.15;
  double tor_mean = 0.3, tor_stddev = 0.1;

  // [hotspots]
  double load_pct = 5;          // % of machines where a shortage starts each period
  int duration_periods = 5;
  double hot_demand = 0.85;     // tenants' demand on a machine in shortage
  double saturation = 0.98;     // link saturated at >= this fraction of capacity

  // [vms]
  double disk_bytes = 50e9;     // disk_gb
  double write_bps = 30e6;      // write_mb_s
  double dirty_fraction = 1;    // share of writes that dirty already-shipped data
  double vmm_time_s = 5;

  // [tasks]
  uint64_t count = 1000;
  double interval_s = 100;
  double deadline_s = 350;      // relative to each task's arrival
  double important_pct = 0;

  // [policy] (period_s is also the accounting period of hot spots and SLAs)
  policy::Config policy_config;
  Congestion congestion = Congestion::kSaturated;
};

// Parses TOML text. Errors: code errc::kInvalidArgument, message
// "<source>: <table.field>: <what is wrong>". Unknown tables or keys are errors
// (a typo must not silently fall back to a default).
Result<Scenario> ParseScenario(const std::string& toml_text, const std::string& source_name);
Result<Scenario> LoadScenario(const std::string& path);

// Checks cross-field constraints; used after command-line overrides too.
Status ValidateScenario(const Scenario& s);

const char* ToString(PolicyKind kind);
const char* ToString(Congestion congestion);

}  // namespace migratefs::sim
