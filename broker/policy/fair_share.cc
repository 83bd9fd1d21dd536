#include "broker/policy/fair_share.h"

#include <algorithm>
#include <numeric>

namespace migratefs::policy {

std::vector<double> WaterFill(double pool, const std::vector<double>& wants) {
  std::vector<double> share(wants.size(), 0.0);
  std::vector<size_t> order(wants.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return wants[a] < wants[b]; });
  double left = std::max(0.0, pool);
  for (size_t k = 0; k < order.size(); ++k) {
    double equal = left / static_cast<double>(order.size() - k);
    double got = std::min(std::max(0.0, wants[order[k]]), equal);
    share[order[k]] = got;
    left -= got;
  }
  return share;
}

}  // namespace migratefs::policy
