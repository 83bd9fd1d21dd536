#include "broker/daemon/link_monitor.h"

#include <fstream>

namespace migratefs::broker {

LinkMonitor::LinkMonitor(std::vector<LinkConfig> links, std::string sys_root,
                         double saturation_pct)
    : links_(std::move(links)),
      sys_root_(std::move(sys_root)),
      saturation_pct_(saturation_pct),
      previous_(links_.size()),
      samples_(links_.size()) {
  for (size_t i = 0; i < links_.size(); ++i) {
    samples_[i].iface = links_[i].iface;
    samples_[i].section = links_[i].section;
    samples_[i].capacity_kbps = links_[i].capacity_kbps;
  }
}

std::optional<uint64_t> LinkMonitor::ReadCounter(const std::string& iface, const char* name) const {
  std::ifstream in(sys_root_ + "/class/net/" + iface + "/statistics/" + name);
  uint64_t value = 0;
  if (!(in >> value)) return std::nullopt;
  return value;
}

const std::vector<LinkSample>& LinkMonitor::Sample(double now_s) {
  for (size_t i = 0; i < links_.size(); ++i) {
    LinkSample& sample = samples_[i];
    Previous& prev = previous_[i];
    auto tx = ReadCounter(links_[i].iface, "tx_bytes");
    auto rx = ReadCounter(links_[i].iface, "rx_bytes");
    sample.readable = tx && rx;
    sample.tx_kbps = sample.rx_kbps = 0;
    double interval = now_s - prev.at_s;
    auto rate = [interval](std::optional<uint64_t> now, std::optional<uint64_t> before) {
      if (!now || !before || *now < *before) return 0.0;
      return static_cast<double>(*now - *before) / interval / 1000.0;
    };
    if (interval > 0) {
      sample.tx_kbps = rate(tx, prev.tx);
      sample.rx_kbps = rate(rx, prev.rx);
    }
    double threshold = links_[i].capacity_kbps * saturation_pct_ / 100.0;
    sample.saturated = sample.tx_kbps > threshold || sample.rx_kbps > threshold;
    prev = Previous{tx, rx, now_s};
  }
  return samples_;
}

}  // namespace migratefs::broker
