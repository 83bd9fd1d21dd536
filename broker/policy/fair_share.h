// Max-min fair split of one pool among claimants that each want at most some amount
// (water filling). The building block of the class reservations (reservation.h) and
// of the fleet budgets (budget.h). Pure.
#pragma once

#include <vector>

namespace migratefs::policy {

// Splits `pool` (>= 0; negative counts as 0) among wants.size() claimants: nobody gets
// more than its want (kInfinity allowed), the smallest wants are met first and the rest
// is split equally. The result adds up to min(pool, sum of wants), in input order.
std::vector<double> WaterFill(double pool, const std::vector<double>& wants);

}  // namespace migratefs::policy
