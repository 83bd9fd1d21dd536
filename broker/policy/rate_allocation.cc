// Seed 000, equations 6-8: one rate per migration on a shared link. See the contract
// in rate_allocation.h and broker/policy/README.md "Rate allocation (seed 000)".
#include "broker/policy/rate_allocation.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "broker/policy/format.h"

namespace migratefs::policy {
namespace {

using internal::Format;

// Relative width at which a bisection stops: a few ulps.
constexpr double kRelTol = 4e-16;
constexpr int kMaxIterations = 400;

double DirtyOf(const RateProblem& p, size_t j) {
  return p.dirty_bps.size() == 1 ? p.dirty_bps[0] : p.dirty_bps[j];
}

// g(r) = -d/dr of (V/r) * sum_{i=0}^{n} (D/r)^i = sum_{i=0}^{n} (i+1) V D^i / r^{i+2}.
// Strictly decreasing in r when V > 0.
double Marginal(double v, double d, double r, int n) {
  const double t = v / r;
  const double x = d / r;
  double term = t / r;  // i = 0
  double sum = term;
  if (x == 0) return sum;  // D = 0: only round 0 (avoids inf * 0 for tiny r)
  for (int i = 1; i <= n; ++i) {
    term *= x;
    sum += (i + 1) * term;
  }
  return sum;
}

// The r in [floor, cap] with Marginal(r) == lambda; floor if even the floor is worth
// less than lambda, cap if even the cap is worth more.
double RateAt(double v, double d, double cap, int n, double lambda) {
  if (v == 0) return d;
  double lo = d > 0 ? d : cap * 1e-200;
  if (Marginal(v, d, lo, n) <= lambda) return d;
  double hi = cap;
  if (Marginal(v, d, hi, n) >= lambda) return cap;
  // Invariant: Marginal(lo) > lambda > Marginal(hi). Bisect on log r.
  for (int it = 0; it < kMaxIterations && hi > lo * (1 + kRelTol); ++it) {
    const double mid = std::sqrt(lo) * std::sqrt(hi);
    if (!(mid > lo && mid < hi)) break;
    if (Marginal(v, d, mid, n) > lambda) lo = mid;
    else hi = mid;
  }
  return hi;  // the side whose rates add up to no more than asked
}

double SumAt(const RateProblem& p, double lambda, std::vector<double>* rates) {
  double sum = 0;
  for (size_t j = 0; j < p.size_bytes.size(); ++j) {
    (*rates)[j] = RateAt(p.size_bytes[j], DirtyOf(p, j), p.capacity_bps, p.rounds, lambda);
    sum += (*rates)[j];
  }
  return sum;
}

}  // namespace

MigrationTimes RoundTimes(double size_bytes, double dirty_bps, double rate_bps, int rounds) {
  MigrationTimes out;
  const double x = dirty_bps / rate_bps;
  double term = size_bytes / rate_bps;  // round 0: T_0 = V / r
  for (int i = 0; i < rounds; ++i) {
    out.precopy_s += term;
    term *= x;  // round i+1 ships what round i let the VM dirty
  }
  out.downtime_s = term;
  return out;
}

Status ValidateRateProblem(const RateProblem& p) {
  auto bad = [](std::string message) { return MakeError(errc::kInvalidArgument, std::move(message)); };
  if (!(p.capacity_bps > 0) || !std::isfinite(p.capacity_bps))
    return bad(Format("capacity_bps must be a finite number > 0 (got %g)", p.capacity_bps));
  if (p.size_bytes.empty()) return bad("size_bytes must list at least one migration");
  for (size_t j = 0; j < p.size_bytes.size(); ++j) {
    if (!(p.size_bytes[j] >= 0) || !std::isfinite(p.size_bytes[j]))
      return bad(Format("size_bytes[%zu] must be a finite number >= 0 (got %g)", j, p.size_bytes[j]));
  }
  if (p.dirty_bps.size() != 1 && p.dirty_bps.size() != p.size_bytes.size())
    return bad(Format("dirty_bps has %zu values for %zu migrations: give one for all or one each",
                      p.dirty_bps.size(), p.size_bytes.size()));
  for (size_t j = 0; j < p.dirty_bps.size(); ++j) {
    if (!(p.dirty_bps[j] >= 0) || !std::isfinite(p.dirty_bps[j]))
      return bad(Format("dirty_bps[%zu] must be a finite number >= 0 (got %g)", j, p.dirty_bps[j]));
  }
  if (p.rounds < 1 || p.rounds > kMaxRounds)
    return bad(Format("rounds must be 1..%d (got %d)", kMaxRounds, p.rounds));
  double dirty_sum = 0;
  for (size_t j = 0; j < p.size_bytes.size(); ++j) dirty_sum += DirtyOf(p, j);
  if (dirty_sum >= p.capacity_bps)
    return MakeError(kRatesInfeasible,
                     Format("no feasible allocation: the dirty rates add up to %.6g B/s, not below "
                            "the capacity %.6g B/s (every rate must exceed its dirty rate)",
                            dirty_sum, p.capacity_bps));
  return OkStatus();
}

Result<RateAllocation> AllocateRates(const RateProblem& p) {
  if (Status s = ValidateRateProblem(p); !s.ok()) return s.error();
  const size_t m = p.size_bytes.size();
  const double r_cap = p.capacity_bps;
  RateAllocation out;
  out.rates_bps.assign(m, 0);
  out.at_floor.assign(m, false);

  double dirty_sum = 0;
  bool any_data = false;
  for (size_t j = 0; j < m; ++j) {
    dirty_sum += DirtyOf(p, j);
    any_data = any_data || p.size_bytes[j] > 0;
  }
  double lambda = 0;
  if (any_data) {
    // Bracket: at lambda_lo every migration with data would take the whole link
    // (sum >= R); at lambda_hi no migration exceeds the feasible point
    // D_j + (R - sum D)/M (sum <= R). The rates are nonincreasing in lambda.
    const double share = (r_cap - dirty_sum) / static_cast<double>(m);
    double lambda_lo = std::numeric_limits<double>::infinity(), lambda_hi = 0;
    for (size_t j = 0; j < m; ++j) {
      const double v = p.size_bytes[j], d = DirtyOf(p, j);
      if (v == 0) continue;
      lambda_lo = std::min(lambda_lo, Marginal(v, d, r_cap, p.rounds));
      lambda_hi = std::max(lambda_hi, Marginal(v, d, d + share, p.rounds));
    }
    for (int it = 0; it < kMaxIterations && lambda_hi > lambda_lo * (1 + kRelTol); ++it) {
      const double mid = std::sqrt(lambda_lo) * std::sqrt(lambda_hi);
      if (!(mid > lambda_lo && mid < lambda_hi)) break;
      if (SumAt(p, mid, &out.rates_bps) > r_cap) lambda_lo = mid;
      else lambda_hi = mid;
    }
    lambda = lambda_hi;
    SumAt(p, lambda, &out.rates_bps);
  } else {
    for (size_t j = 0; j < m; ++j) out.rates_bps[j] = DirtyOf(p, j);
  }
  out.multiplier = lambda;
  for (size_t j = 0; j < m; ++j) {
    const double d = DirtyOf(p, j);
    out.at_floor[j] = out.rates_bps[j] <= d;
    if (out.rates_bps[j] <= 0) continue;  // V == 0 and D == 0: nothing to time
    MigrationTimes t = RoundTimes(p.size_bytes[j], d, out.rates_bps[j], p.rounds);
    out.precopy_s += t.precopy_s;
    out.downtime_s += t.downtime_s;
  }
  out.total_s = out.precopy_s + out.downtime_s;
  return out;
}

}  // namespace migratefs::policy
