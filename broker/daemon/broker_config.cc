#include "broker/daemon/broker_config.h"

#include <fstream>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "broker/daemon/hypervisor_command.h"
#include "broker/daemon/line_socket.h"

namespace migratefs::broker {

namespace {

// Reads typed fields out of one TOML table, naming `prefix + key` in every error, and
// remembers which keys it read so that unknown (misspelt) keys are reported too.
class Fields {
 public:
  Fields(const toml::table& table, std::string origin, std::string prefix)
      : table_(table), origin_(std::move(origin)), prefix_(std::move(prefix)) {}

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  void String(const char* key, std::string* out, bool required) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (!node) {
      if (required) Fail(key, "is missing (a string)");
      return;
    }
    if (!node->is_string()) return Fail(key, "must be a string");
    *out = node->as_string()->get();
    if (required && out->empty()) Fail(key, "must not be empty");
  }

  // A number (integer or float) in [min, max].
  void Number(const char* key, double* out, double min, double max, bool required = false) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (!node) {
      if (required) Fail(key, "is missing (a number)");
      return;
    }
    if (auto v = node->value<double>(); v && (node->is_integer() || node->is_floating_point())) {
      if (!(*v >= min && *v <= max)) {
        std::ostringstream range;
        range << "must be between " << min << " and " << max << ", got " << *v;
        return Fail(key, range.str());
      }
      *out = *v;
      return;
    }
    Fail(key, "must be a number");
  }

  void Integer(const char* key, int* out, int min, int max) {
    double v = *out;
    Number(key, &v, min, max);
    if (ok() && v != static_cast<int>(v)) return Fail(key, "must be a whole number");
    *out = static_cast<int>(v);
  }

  void Endpoint(const char* key, std::string* out, bool required) {
    String(key, out, required);
    if (ok() && !out->empty() && !ParseEndpoint(*out)) Fail(key, "must be HOST:PORT");
  }

  void Bool(const char* key, bool* out) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (!node) return;
    if (!node->is_boolean()) return Fail(key, "must be true or false");
    *out = node->as_boolean()->get();
  }

  const toml::table* Table(const char* key) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (!node) return nullptr;
    if (!node->is_table()) {
      Fail(key, "must be a table ([" + prefix_ + key + "])");
      return nullptr;
    }
    return node->as_table();
  }

  // A DSCP name ("AF41", "EF", "CS6", ...) or a code point 0..63.
  void Dscp(const char* key, Marking* out) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (!node) return;
    if (node->is_integer()) {
      int64_t v = node->as_integer()->get();
      if (v < 0 || v > 63) return Fail(key, "must be a DSCP name or 0..63, got " + std::to_string(v));
      out->dscp_code = static_cast<int>(v);
      return;
    }
    if (node->is_string()) {
      std::string name = node->as_string()->get();
      if (!DscpCodeOf(name)) {
        return Fail(key, "\"" + name + "\" is no DSCP name (DF, LE, CS0..CS7, AF11..AF43, EF, VA) nor 0..63");
      }
      out->dscp_name = name;
      return;
    }
    Fail(key, "must be a DSCP name (e.g. \"AF41\") or a number 0..63");
  }

  const toml::array* Array(const char* key) {
    seen_.insert(key);
    const toml::node* node = table_.get(key);
    if (!node) return nullptr;
    if (!node->is_array_of_tables()) {
      Fail(key, "must be an array of tables ([[" + std::string(key) + "]])");
      return nullptr;
    }
    return node->as_array();
  }

  void RejectUnknown() {
    for (const auto& [key, value] : table_) {
      if (!seen_.count(std::string(key.str())) && ok()) {
        Fail(std::string(key.str()), "is not a known field");
      }
    }
  }

  void Fail(const std::string& key, const std::string& what) {
    if (error_.empty()) error_ = origin_ + ": field \"" + prefix_ + key + "\" " + what;
  }
  void Adopt(const std::string& error) {
    if (error_.empty()) error_ = error;
  }

 private:
  const toml::table& table_;
  std::string origin_;
  std::string prefix_;
  std::set<std::string> seen_;
  std::string error_;
};

Error Invalid(std::string message) { return MakeError(errc::kInvalidArgument, std::move(message)); }

}  // namespace

std::string BrokerConfig::PeerAddress(const std::string& name) const {
  for (const PeerConfig& peer : peers) {
    if (peer.name == name) return peer.address;
  }
  return "";
}

Result<std::string> ReadKeyFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Invalid("keyfile \"" + path + "\" cannot be read");
  std::string key((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.pop_back();
  if (key.size() < 16) return Invalid("keyfile \"" + path + "\" holds fewer than 16 bytes");
  return key;
}

Result<BrokerConfig> ParseBrokerConfig(const std::string& toml_text, const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << origin << ":" << e.source().begin.line << ": " << e.description();
    return Invalid(where.str());
  }
  BrokerConfig c;
  Fields f(root, origin, "");
  f.String("host", &c.host, true);
  f.String("control_socket", &c.control_socket, true);
  f.Endpoint("listen", &c.listen, false);
  f.String("socket", &c.socket, false);
  f.String("keyfile", &c.keyfile, !c.listen.empty());
  f.Number("period", &c.policy.period_s, 0.05, 86400, true);
  f.Number("danger", &c.policy.danger_pct, 100, 1e6);
  f.Number("warning", &c.policy.warning_pct, 100, 1e6);
  double increase_kbps = c.policy.increase_bps / 1000;
  f.Number("C", &increase_kbps, 1, 1e9);
  c.policy.increase_bps = increase_kbps * 1000;
  f.Integer("n", &c.policy.quiet_periods, 0, 1000000);
  double min_net_kbps = c.policy.min_network_bps / 1000, min_disk_kbps = c.policy.min_disk_bps / 1000;
  f.Number("min_network_kbps", &min_net_kbps, 1, 1e9);
  f.Number("min_disk_kbps", &min_disk_kbps, 1, 1e9);
  c.policy.min_network_bps = min_net_kbps * 1000;
  c.policy.min_disk_bps = min_disk_kbps * 1000;
  f.Number("disk_target", &c.policy.disk_target_pct, 1, 1e6);
  f.Number("vmm_time", &c.vmm_time_s, 0, 1e6);
  f.Number("saturation", &c.saturation_pct, 1, 100);
  f.String("sys_root", &c.sys_root, false);
  f.String("hypervisor_command", &c.hypervisor_command, false);
  f.Number("hypervisor_timeout", &c.hypervisor_timeout_s, 0.1, 86400);
  f.Number("release_hold", &c.release_hold_s, 0, 86400);
  f.Number("peer_timeout", &c.peer_timeout_s, 0.05, 600);
  f.Number("control_timeout", &c.control_timeout_s, 0.05, 600);
  f.Number("replay_window", &c.replay_window_s, 1, 3600);
  f.Integer("max_parallel", &c.max_parallel, 0, 100000);
  f.Number("budget_kbps", &c.budget_kbps, 0, 1e9);
  f.Bool("rate_allocation", &c.rate_allocation);
  f.Integer("allocation_rounds", &c.allocation_rounds, 1, policy::kMaxRounds);
  if (const toml::table* marking = f.Table("marking")) {
    Fields m(*marking, origin, "marking.");
    for (const char* cls : {"high", "medium", "low"}) {
      const toml::table* t = m.Table(cls);
      if (!t) continue;
      Fields k(*t, origin, std::string("marking.") + cls + ".");
      Marking mk;
      k.Dscp("dscp", &mk);
      int so_priority = -1;
      k.Integer("so_priority", &so_priority, 0, 2147483647);
      if (k.ok() && so_priority >= 0) mk.so_priority = so_priority;
      k.RejectUnknown();
      m.Adopt(k.error());
      c.marking[policy::ParsePriorityClass(cls, "").value()] = mk;
    }
    m.RejectUnknown();
    f.Adopt(m.error());
  }

  if (const toml::array* peers = f.Array("peer")) {
    for (size_t i = 0; i < peers->size() && f.ok(); ++i) {
      Fields p(*peers->get(i)->as_table(), origin, "peer[" + std::to_string(i) + "].");
      PeerConfig peer;
      p.String("name", &peer.name, true);
      p.Endpoint("address", &peer.address, true);
      p.RejectUnknown();
      f.Adopt(p.error());
      c.peers.push_back(peer);
    }
  }
  if (const toml::array* links = f.Array("link")) {
    for (size_t i = 0; i < links->size() && f.ok(); ++i) {
      Fields l(*links->get(i)->as_table(), origin, "link[" + std::to_string(i) + "].");
      LinkConfig link;
      l.String("iface", &link.iface, true);
      l.Number("capacity_kbps", &link.capacity_kbps, 1, 1e9, true);
      l.String("section", &link.section, false);
      l.Number("workload_min_kbps", &link.workload_min_kbps, 0, 1e9);
      l.Number("workload_max_kbps", &link.workload_max_kbps, 0, 1e9);
      l.Number("workload_headroom_kbps", &link.workload_headroom_kbps, 0, 1e9);
      l.RejectUnknown();
      if (l.ok() && link.workload_min_kbps > 0 && link.workload_max_kbps == 0) {
        l.Fail("workload_max_kbps", "is missing (workload_min_kbps needs an upper limit too)");
      }
      if (l.ok() && link.workload_max_kbps < link.workload_min_kbps) {
        l.Fail("workload_max_kbps", "must be >= workload_min_kbps");
      }
      if (l.ok() && link.workload_max_kbps > link.capacity_kbps) {
        l.Fail("workload_max_kbps", "must not exceed capacity_kbps (a reservation above the link)");
      }
      if (l.ok() && link.iface.find('/') != std::string::npos) l.Fail("iface", "must not hold '/'");
      f.Adopt(l.error());
      c.links.push_back(link);
    }
  }
  f.RejectUnknown();
  if (!f.ok()) return Invalid(f.error());
  if (c.policy.warning_pct <= c.policy.danger_pct) {
    return Invalid(origin + ": field \"warning\" must be greater than \"danger\"");
  }
  if (auto s = policy::ValidateConfig(c.policy); !s) {
    return Invalid(origin + ": " + s.error().message);
  }
  if (auto s = CheckCommandTemplate(c.hypervisor_command); !s) {
    return Invalid(origin + ": field \"hypervisor_command\": " + s.error().message);
  }
  if (!c.peers.empty() && c.keyfile.empty()) {
    return Invalid(origin + ": field \"keyfile\" is missing (peers need the pre-shared key)");
  }
  if (c.listen.empty() && c.socket.empty()) {
    return Invalid(origin + ": field \"listen\" or \"socket\" must be set (nothing to submit to)");
  }
  return c;
}

Result<BrokerConfig> LoadBrokerConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Invalid("config \"" + path + "\" cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  auto config = ParseBrokerConfig(text.str(), path);
  if (!config) return config;
  if (!config.value().keyfile.empty()) {
    auto key = ReadKeyFile(config.value().keyfile);
    if (!key) return Invalid(path + ": field \"keyfile\": " + key.error().message);
    config.value().key = key.value();
  }
  return config;
}

}  // namespace migratefs::broker
