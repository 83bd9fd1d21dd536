#include "broker/daemon/marking.h"

#include <algorithm>
#include <cctype>
#include <map>

namespace migratefs::broker {

std::optional<int> DscpCodeOf(const std::string& name) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::toupper(c); });
  static const std::map<std::string, int> kNames = [] {
    std::map<std::string, int> m{{"DF", 0}, {"BE", 0}, {"LE", 1}, {"EF", 46}, {"VA", 44}};
    for (int i = 0; i < 8; ++i) m["CS" + std::to_string(i)] = 8 * i;
    for (int cls = 1; cls <= 4; ++cls) {
      for (int drop = 1; drop <= 3; ++drop) m["AF" + std::to_string(cls * 10 + drop)] = 8 * cls + 2 * drop;
    }
    return m;
  }();
  auto it = kNames.find(n);
  if (it == kNames.end()) return std::nullopt;
  return it->second;
}

void AddMarking(const Marking& marking, nlohmann::json* request) {
  if (marking.dscp_name) {
    std::string n = *marking.dscp_name;
    std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::toupper(c); });
    (*request)["dscp"] = n;
  } else if (marking.dscp_code) {
    (*request)["dscp"] = *marking.dscp_code;
  }
  if (marking.so_priority) (*request)["so_priority"] = *marking.so_priority;
}

}  // namespace migratefs::broker
