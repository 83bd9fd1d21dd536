// Seed 002's profile-and-predict for hybrid copy. Contract in hybrid_predictor.h,
// choices in broker/policy/README.md "Profile and predict (seed 002)".
#include "broker/policy/hybrid_predictor.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <numeric>
#include <set>

#include "broker/policy/format.h"

namespace migratefs::policy {
namespace {

using internal::Format;

Error Invalid(const std::string& message) { return MakeError(errc::kInvalidArgument, message); }

bool Finite(double v) { return std::isfinite(v); }

uint64_t BlocksOf(const ImageProfile& im) { return (im.image_bytes + im.block_bytes - 1) / im.block_bytes; }

Status ValidateCounts(const std::vector<BlockCount>& list, uint64_t blocks, const std::string& field) {
  std::set<uint64_t> seen;
  for (size_t k = 0; k < list.size(); ++k) {
    const BlockCount& c = list[k];
    const std::string at = Format("%s[%zu]", field.c_str(), k);
    if (c.block >= blocks)
      return Invalid(Format("%s: block %llu is outside the image (%llu blocks)", at.c_str(),
                            (unsigned long long)c.block, (unsigned long long)blocks));
    if (!Finite(c.count) || c.count < 0) return Invalid(at + ": count must be a finite number >= 0");
    if (!seen.insert(c.block).second)
      return Invalid(Format("%s: block %llu is listed twice", at.c_str(), (unsigned long long)c.block));
  }
  return OkStatus();
}

// Poisson(mu): P(N >= k) and P(N == k - 1), k >= 1, by summation in log space.
double PoissonTail(double mu, uint64_t k) {
  if (mu <= 0) return 0;
  double below = 0;
  for (uint64_t n = 0; n < k; ++n) below += std::exp(double(n) * std::log(mu) - mu - std::lgamma(double(n) + 1));
  return std::clamp(1 - below, 0.0, 1.0);
}
double PoissonPmf(double mu, uint64_t n) {
  if (mu <= 0) return n == 0 ? 1 : 0;
  return std::exp(double(n) * std::log(mu) - mu - std::lgamma(double(n) + 1));
}

// The flattened image set: images one after another, blocks in start order (the
// order in which the sender sweeps and the pull walks them).
class Model {
 public:
  explicit Model(const PredictInput& in) : in_(in) {
    uint64_t total = 0;
    for (const ImageProfile& im : in.images) total += BlocksOf(im);
    bytes_.resize(total);
    data_.assign(total, in.images.empty() ? 0 : 1);
    write_.assign(total, 0);
    access_.assign(total, 0);
    uint64_t base = 0;
    for (const ImageProfile& im : in.images) {
      const uint64_t n = BlocksOf(im);
      for (uint64_t i = 0; i < n; ++i)
        bytes_[base + i] = double(std::min<uint64_t>(im.block_bytes, im.image_bytes - i * im.block_bytes));
      if (im.data_known) {
        std::fill(data_.begin() + base, data_.begin() + base + n, 0);
        for (const BlockRange& r : im.data) std::fill(data_.begin() + base + r.first, data_.begin() + base + r.first + r.count, 1);
      }
      for (const BlockCount& c : im.writes) {
        write_[base + c.block] = c.count / im.window_s;
        access_[base + c.block] += c.count / im.window_s;
        if (c.count > 0) data_[base + c.block] = 1;  // a written block holds data
      }
      for (const BlockCount& c : im.reads) access_[base + c.block] += c.count / im.window_s;
      for (const BlockCount& c : im.writes) writes_per_s_ += c.count / im.window_s;
      base += n;
    }
    for (uint64_t i = 0; i < total; ++i) {
      if (!data_[i]) continue;
      order_.push_back(uint32_t(i));
      data_bytes_ += bytes_[i];
    }
    // Coldest first: fewest writes, then most reads/accesses (they would be fetched),
    // then position.
    std::stable_sort(order_.begin(), order_.end(), [this](uint32_t x, uint32_t y) {
      if (write_[x] != write_[y]) return write_[x] < write_[y];
      return access_[x] > access_[y];
    });
    block_bytes_ = in.images.empty() ? double(kDefaultBlockBytes) : double(in.images[0].block_bytes);
  }

  double data_bytes() const { return data_bytes_; }
  double writes_per_s() const { return writes_per_s_; }

  PredictRow Row(double s) const;
  double ExpectedFetches(const std::vector<uint8_t>& pre) const;
  // 1 for each block of the flattened set that hybrid S pre-copies: the first
  // round(S % of the data blocks) of the coldest-first order.
  std::vector<uint8_t> PrecopyMask(double s) const {
    const uint64_t k = uint64_t(std::llround(s / 100.0 * double(order_.size())));
    std::vector<uint8_t> pre(bytes_.size(), 0);
    for (uint64_t j = 0; j < k; ++j) pre[order_[j]] = 1;
    return pre;
  }
  bool data(uint64_t i) const { return data_[i] != 0; }

 private:
  struct Written {  // a pre-copied block with writes, in sweep order
    double bytes, rate, clean_at;
    size_t group;
  };
  struct Sums {
    double dirty_bytes = 0;  // expected dirty set
    double fresh_per_s = 0;  // expected rate at which clean blocks turn dirty (blocks/s)
  };
  // The two sums over the written pre-copied blocks, kept per write-rate group relative
  // to a reference time t_ref no earlier than any clean time c_i:
  //   E_g = sum b_i e^{-w_g (t_ref - c_i)},  C_g = sum e^{-w_g (t_ref - c_i)}
  // so that a visit costs O(1) and an evaluation O(groups).
  class Tracker {
   public:
    Tracker(const std::vector<Written>& blocks, std::vector<double> rates, double t_ref)
        : rate_(std::move(rates)), total_(rate_.size(), 0), e_(rate_.size(), 0), c_(rate_.size(), 0), t_ref_(t_ref) {
      for (const Written& b : blocks) {
        const double x = std::exp(-rate_[b.group] * (t_ref - b.clean_at));
        total_[b.group] += b.bytes;
        e_[b.group] += b.bytes * x;
        c_[b.group] += x;
      }
    }
    void Rebase(double t) {  // t >= t_ref
      for (size_t g = 0; g < rate_.size(); ++g) {
        const double f = std::exp(-rate_[g] * (t - t_ref_));
        e_[g] *= f;
        c_[g] *= f;
      }
      t_ref_ = t;
    }
    void Visit(const Written& b, double old_clean, double new_clean) {  // both <= t_ref
      const double d = std::exp(-rate_[b.group] * (t_ref_ - new_clean)) - std::exp(-rate_[b.group] * (t_ref_ - old_clean));
      e_[b.group] = std::clamp(e_[b.group] + b.bytes * d, 0.0, total_[b.group]);
      c_[b.group] = std::max(0.0, c_[b.group] + d);
    }
    Sums Now() const {  // at t_ref
      Sums s;
      for (size_t g = 0; g < rate_.size(); ++g) {
        s.dirty_bytes += std::max(0.0, total_[g] - e_[g]);
        s.fresh_per_s += rate_[g] * c_[g];
      }
      return s;
    }
    size_t groups() const { return rate_.size(); }

   private:
    std::vector<double> rate_, total_, e_, c_;
    double t_ref_;
  };
  // Groups the written blocks by write rate: exact when there are at most 4096 distinct
  // rates, else log buckets (0.5 %, coarser until 4096), each at its mean rate.
  static std::vector<double> GroupByRate(std::vector<Written>* blocks) {
    double scale = 0;  // 0 = exact
    for (;;) {
      std::vector<double> keys;
      for (const Written& b : *blocks) keys.push_back(scale > 0 ? std::round(std::log(b.rate) * scale) : b.rate);
      std::vector<double> distinct = keys;
      std::sort(distinct.begin(), distinct.end());
      distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
      if (distinct.size() <= 4096 || (scale > 0 && scale < 0.01)) {
        std::vector<double> sum(distinct.size(), 0), n(distinct.size(), 0);
        for (size_t k = 0; k < blocks->size(); ++k) {
          const size_t g = size_t(std::lower_bound(distinct.begin(), distinct.end(), keys[k]) - distinct.begin());
          (*blocks)[k].group = g;
          sum[g] += (*blocks)[k].rate;
          n[g] += 1;
        }
        for (size_t g = 0; g < distinct.size(); ++g) sum[g] /= n[g];
        return sum;
      }
      scale = scale > 0 ? scale / 2 : 200;
    }
  }

  const PredictInput& in_;
  std::vector<double> bytes_;
  std::vector<uint8_t> data_;
  std::vector<double> write_;   // writes/s
  std::vector<double> access_;  // reads + writes per second
  std::vector<uint32_t> order_; // data blocks, coldest first
  double data_bytes_ = 0;
  double writes_per_s_ = 0;
  double block_bytes_ = 0;
};

// Post-copy. The pull walks the remote data blocks in order; the first access (read
// or write) to a block that has not arrived fetches it, ahead of the pull. Block i is
// fetched if first accessed before it arrives, at tau_i, with probability
// 1 - e^{-a_i tau_i}. The link never idles, so by tau_i it has carried every block up
// to i and the blocks ahead that were fetched by then:
//   r tau_i = B(<= i) + sum_{j > i} b_j (1 - e^{-a_j tau_i})
// (tau_i is the smallest root; it grows with i). Without fetches ahead this is
// tau_i = B(<= i) / r. Blocks ahead are grouped by access rate (0.5 % buckets, coarser
// when there are many) so that one evaluation costs O(groups).
double Model::ExpectedFetches(const std::vector<uint8_t>& pre) const {
  const double r = in_.net_bps;
  std::vector<size_t> rest;
  for (size_t i = 0; i < bytes_.size(); ++i)
    if (data_[i] && !pre[i]) rest.push_back(i);
  double scale = 200;  // buckets per e-fold of the access rate
  std::vector<int64_t> key(rest.size());
  std::vector<int64_t> keys;
  for (;;) {
    keys.clear();
    for (size_t k = 0; k < rest.size(); ++k) {
      const double a = access_[rest[k]];
      key[k] = a > 0 ? std::llround(std::log(a) * scale) : std::numeric_limits<int64_t>::min();
      if (a > 0) keys.push_back(key[k]);
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    if (keys.size() <= 512 || scale < 1) break;
    scale /= 2;
  }
  std::vector<double> ahead(keys.size(), 0), rate(keys.size(), 0);
  std::vector<size_t> group(rest.size(), SIZE_MAX);
  for (size_t k = 0; k < rest.size(); ++k) {
    if (access_[rest[k]] <= 0) continue;
    const size_t g = size_t(std::lower_bound(keys.begin(), keys.end(), key[k]) - keys.begin());
    group[k] = g;
    ahead[g] += bytes_[rest[k]];
    rate[g] = access_[rest[k]];
  }
  double tau = 0, fetches = 0, behind = 0;
  for (size_t k = 0; k < rest.size(); ++k) {
    const double a = access_[rest[k]];
    behind += bytes_[rest[k]];
    if (group[k] != SIZE_MAX) ahead[group[k]] -= bytes_[rest[k]];
    // Fixed-point iteration from below: h(tau) = (B(<= i) + fetched ahead) / r is
    // increasing, so it climbs to the smallest root.
    for (int it = 0; it < 1000; ++it) {
      double fetched_ahead = 0;
      for (size_t g = 0; g < keys.size(); ++g)
        if (ahead[g] > 0) fetched_ahead -= ahead[g] * std::expm1(-rate[g] * tau);
      const double next = (behind + fetched_ahead) / r;
      if (!(next > tau * (1 + 1e-12))) break;
      tau = next;
    }
    if (a > 0) fetches -= std::expm1(-a * tau);
  }
  return fetches;
}

PredictRow Model::Row(double s) const {
  const double r = in_.net_bps;
  const ConvergenceRule& rule = in_.rule;
  PredictRow row;
  row.s_percent = s;
  const std::vector<uint8_t> pre = PrecopyMask(s);
  row.precopy_blocks = uint64_t(std::count(pre.begin(), pre.end(), uint8_t(1)));

  // Pass 0 (phase 1) and the post-copy pull, both in sweep order.
  std::vector<Written> written;
  double mirrored_rate = 0;  // writes/s to pre-copied blocks
  double sent = 0, pulled = 0;
  for (size_t i = 0; i < bytes_.size(); ++i) {
    if (!data_[i]) continue;
    if (pre[i]) {
      if (write_[i] > 0) {
        written.push_back({bytes_[i], write_[i], sent / r, 0});  // clean from the start of its send
        mirrored_rate += write_[i];
      }
      sent += bytes_[i];
    } else {
      pulled += bytes_[i];
    }
  }
  row.precopy_bytes = sent;
  row.remote_bytes = pulled;
  row.bulk_s = sent / r;
  row.remote_s = pulled / r;
  row.fetches = ExpectedFetches(pre);

  // Phase 2: the sweep over the written pre-copied blocks (the others stay clean),
  // judged by the convergence rule at checkpoints. Each way out of phase 2 is a
  // switch to phase 3 at time t with the dirty set then; `survival` is the
  // probability that phase 2 is still running.
  const double t1 = row.bulk_s;
  const double threshold = std::max(rule.drain_min_blocks * block_bytes_, r * rule.drain_s);
  double survival = 1, exp_switch = 0, exp_dirty = 0;
  auto switch_at = [&](double p, double t, double dirty) {
    exp_switch += p * (t - t1);
    exp_dirty += p * dirty;
  };
  if (written.empty()) {
    row.p_converge = 1;
    survival = 0;
  } else {
    std::vector<double> rates = GroupByRate(&written);
    Tracker tracker(written, rates, t1);
    // Checkpoints every quarter second (coarser when there are many rate groups, so
    // that the work stays bounded), with one exactly where the 2 s window is first
    // judged.
    const double window = rule.window_s;
    const double step = std::max(0.25, 4 * (t1 + 1) * double(tracker.groups()) / 5e7);
    const double judge_from = t1 + window;
    auto checkpoint_time = [&](uint64_t m) {
      if (step <= window) {
        const double per = window / std::ceil(window / step);  // judge_from on the grid
        return m * per >= window - 1e-9 * window && m * per <= window + 1e-9 * window ? judge_from : t1 + m * per;
      }
      return m == 0 ? t1 : judge_from + double(m - 1) * step;
    };
    const uint64_t kfire =
        std::max<uint64_t>(1, uint64_t(std::ceil(rule.ratio * r * window / block_bytes_ - 1e-12)));
    bool first_judgement = true;
    std::deque<std::pair<double, double>> history;  // (checkpoint time, fresh rate)
    double best = std::numeric_limits<double>::infinity(), best_at = t1;
    double last_cp = t1;
    bool done = false;
    auto checkpoint = [&](double t) {
      tracker.Rebase(t);
      const Sums now = tracker.Now();
      if (now.dirty_bytes <= threshold) {  // "drained"
        row.p_converge = survival;
        switch_at(survival, t, now.dirty_bytes);
        survival = 0;
        done = true;
        return;
      }
      // The expected count of fresh blocks in the window: the integral of the fresh
      // rate over the last `window` seconds (it varies fast while a hot region is swept).
      history.emplace_back(t, now.fresh_per_s);
      while (history.size() > 2 && history[1].first <= t - window) history.pop_front();
      double mu = now.fresh_per_s * window;
      if (step <= window && history.size() >= 2) {
        mu = 0;
        const double from = t - window;
        for (size_t h = 1; h < history.size(); ++h) {
          double a = history[h - 1].first, fa = history[h - 1].second;
          const double b = history[h].first, fb = history[h].second;
          if (b <= from) continue;
          if (a < from) {  // cut at the window's start
            fa += (fb - fa) * (from - a) / (b - a);
            a = from;
          }
          mu += (b - a) * (fa + fb) / 2;
        }
        if (history.front().first > from) mu += (history.front().first - from) * history.front().second;
      }
      if (t >= judge_from) {  // "no convergence"
        double q = 0;
        if (!rule.noisy) {
          q = now.fresh_per_s * block_bytes_ >= rule.ratio * r ? 1 : 0;
        } else if (first_judgement) {
          q = PoissonTail(mu, kfire);  // the window's count is already over the mark
        } else {
          // First passage of the sliding-window count over the mark: upcrossings (a
          // fresh block arriving while the window holds kfire - 1) come in clumps;
          // Alm's scan-statistic correction (1 - mu / kfire) declumps them, floored at
          // 1/4 where it breaks down (mu near the mark, crossing is quick anyway).
          const double declump = std::max(1 - mu / double(kfire), 0.25);
          const double hazard = now.fresh_per_s * PoissonPmf(mu, kfire - 1) * declump;
          q = -std::expm1(-hazard * (t - last_cp));
          // Still below the mark now is at most P(N < kfire): when the mean climbs
          // through the mark the switch cannot wait for the hazard.
          const double below = 1 - PoissonTail(mu, kfire);
          if (survival > 0 && survival * (1 - q) > below) q = 1 - below / survival;
        }
        first_judgement = false;
        switch_at(survival * q, t, now.dirty_bytes);
        survival *= 1 - q;
      }
      // "stalled": not 5 % smaller for max(stall_s, one pass)
      if (std::isinf(best) || now.dirty_bytes < best - best / 20) {
        best = now.dirty_bytes;
        best_at = t;
      } else if (t - best_at >= std::max(rule.stall_s, now.dirty_bytes / r)) {
        switch_at(survival, t, now.dirty_bytes);
        survival = 0;
      }
      last_cp = t;
      if (survival < 1e-12) done = true;
    };
    checkpoint(t1);
    uint64_t cp_index = 1;
    double next_cp = checkpoint_time(cp_index);
    tracker.Rebase(next_cp);  // visits until the next checkpoint are no later than it
    auto advance_to = [&](double t) {  // checkpoints up to t
      while (!done && next_cp <= t) {
        checkpoint(next_cp);
        next_cp = checkpoint_time(++cp_index);
        if (!done) tracker.Rebase(next_cp);
      }
    };
    double pass_start = t1;
    constexpr int kMaxPasses = 100000;
    int passes = 0;
    while (!done && passes < kMaxPasses) {
      ++passes;
      double pass_sent = 0;
      for (Written& b : written) {
        const double visit = pass_start + pass_sent / r;
        advance_to(visit);
        if (done) break;
        pass_sent += b.bytes * -std::expm1(-b.rate * (visit - b.clean_at));
        tracker.Visit(b, b.clean_at, visit);
        b.clean_at = visit;
      }
      if (done) break;
      pass_start += pass_sent / r;
      advance_to(pass_start);
    }
    row.passes = passes;
    if (survival > 0) {  // out of passes: treat as stalled
      tracker.Rebase(std::max(next_cp, pass_start));
      switch_at(survival, std::max(next_cp, pass_start), tracker.Now().dirty_bytes);
    }
  }
  row.iterate_s = exp_switch;

  // Phase 3: the dirty rest drains while writes to pre-copied blocks are mirrored;
  // the mirrored bytes share the link, but never take more than half of it.
  double write_bytes_rate = 0;  // bytes/s of mirrored writes
  {
    uint64_t base = 0;
    for (const ImageProfile& im : in_.images) {
      const uint64_t n = BlocksOf(im);
      double rate = 0;
      for (uint64_t i = 0; i < n; ++i)
        if (pre[base + i]) rate += write_[base + i];
      write_bytes_rate += rate * im.write_bytes;
      base += n;
    }
  }
  const double drain_rate = r - std::min(write_bytes_rate, r / 2);
  row.final_s = exp_dirty / drain_rate;
  row.mirrored_writes = mirrored_rate * row.final_s;
  const double mean_write_bytes = mirrored_rate > 0 ? write_bytes_rate / mirrored_rate : 0;
  row.mirror_stall_s = row.mirrored_writes * (in_.rtt_s + mean_write_bytes / r);
  row.fetch_stall_s = row.fetches * (in_.rtt_s + block_bytes_ / r);
  row.stall_s = row.fetch_stall_s + row.mirror_stall_s;
  row.converges = row.p_converge >= 0.5;
  row.total_s = row.bulk_s + row.iterate_s + row.final_s + row.remote_s;
  row.meets_deadline = in_.deadline_s <= 0 || row.total_s <= in_.deadline_s;
  row.cost = in_.weights.stall * row.stall_s + in_.weights.remote_uptime * row.remote_s;
  return row;
}

Status ValidateRule(const ConvergenceRule& rule) {
  if (!Finite(rule.drain_s) || rule.drain_s < 0) return Invalid("rule.drain_s must be >= 0");
  if (!Finite(rule.drain_min_blocks) || rule.drain_min_blocks < 0) return Invalid("rule.drain_min_blocks must be >= 0");
  if (!Finite(rule.ratio) || rule.ratio <= 0) return Invalid("rule.ratio must be > 0");
  if (!Finite(rule.window_s) || rule.window_s <= 0) return Invalid("rule.window_s must be > 0");
  if (!Finite(rule.stall_s) || rule.stall_s < 0) return Invalid("rule.stall_s must be >= 0");
  return OkStatus();
}

}  // namespace

Status ValidatePredictInput(const PredictInput& in) {
  if (in.images.empty()) return Invalid("images: at least one image profile is needed");
  uint64_t total = 0;
  for (size_t j = 0; j < in.images.size(); ++j) {
    const ImageProfile& im = in.images[j];
    const std::string at = Format("images[%zu]", j) + (im.name.empty() ? "" : " (" + im.name + ")");
    if (im.image_bytes == 0) return Invalid(at + ".image_bytes: the image is empty (must be > 0)");
    if (im.block_bytes == 0) return Invalid(at + ".block_bytes must be > 0");
    if (im.block_bytes != in.images[0].block_bytes)
      return Invalid(Format("%s.block_bytes: %llu differs from images[0]'s %llu (the daemon has one block size)",
                            at.c_str(), (unsigned long long)im.block_bytes,
                            (unsigned long long)in.images[0].block_bytes));
    if (!Finite(im.window_s) || im.window_s <= 0) return Invalid(at + ".window_s must be a number > 0");
    if (!Finite(im.write_bytes) || im.write_bytes <= 0) return Invalid(at + ".write_bytes must be a number > 0");
    const uint64_t blocks = BlocksOf(im);
    if (blocks > kMaxPredictBlocks || total + blocks > kMaxPredictBlocks)
      return Invalid(Format("%s.image_bytes: more than %llu blocks in all (a larger block_bytes helps)", at.c_str(),
                            (unsigned long long)kMaxPredictBlocks));
    total += blocks;
    if (auto s = ValidateCounts(im.writes, blocks, at + ".writes"); !s) return s;
    if (auto s = ValidateCounts(im.reads, blocks, at + ".reads"); !s) return s;
    if (!im.data_known && !im.data.empty()) return Invalid(at + ".data: given but data_known is false");
    for (size_t k = 0; k < im.data.size(); ++k) {
      const BlockRange& r = im.data[k];
      if (r.count == 0 || r.first >= blocks || r.count > blocks - r.first)
        return Invalid(Format("%s.data[%zu]: blocks %llu..+%llu are not inside the image (%llu blocks)", at.c_str(), k,
                              (unsigned long long)r.first, (unsigned long long)r.count, (unsigned long long)blocks));
    }
  }
  if (!Finite(in.net_bps) || in.net_bps <= 0) return Invalid("net_bps: the link rate must be a number > 0");
  if (!Finite(in.rtt_s) || in.rtt_s < 0) return Invalid("rtt_s must be a number >= 0");
  if (!Finite(in.deadline_s) || in.deadline_s < 0) return Invalid("deadline_s must be a number >= 0 (0 = none)");
  for (size_t k = 0; k < in.s_percent.size(); ++k) {
    const double s = in.s_percent[k];
    if (!Finite(s) || s < 0 || s > 100) return Invalid(Format("s_percent[%zu]: %g is outside 0..100", k, s));
  }
  if (auto s = ValidateRule(in.rule); !s) return s;
  if (!Finite(in.weights.stall) || in.weights.stall < 0) return Invalid("weights.stall must be >= 0");
  if (!Finite(in.weights.remote_uptime) || in.weights.remote_uptime < 0)
    return Invalid("weights.remote_uptime must be >= 0");
  return OkStatus();
}

namespace {
// The checks of a call for one S: the input, then S itself.
Status ValidateOneRow(const PredictInput& input, double s_percent) {
  if (auto s = ValidatePredictInput(input); !s) return s;
  if (!Finite(s_percent) || s_percent < 0 || s_percent > 100)
    return Invalid(Format("s_percent: %g is outside 0..100", s_percent));
  return OkStatus();
}
}  // namespace

Result<PredictRow> PredictAt(const PredictInput& input, double s_percent) {
  if (auto s = ValidateOneRow(input, s_percent); !s) return s.error();
  return Model(input).Row(s_percent);
}

Result<std::vector<std::vector<uint64_t>>> PostcopyBlocks(const std::vector<ImageProfile>& images, double s_percent) {
  PredictInput input;
  input.images = images;
  input.net_bps = 1;  // the choice of blocks does not depend on the link
  if (auto s = ValidateOneRow(input, s_percent); !s) return s.error();
  const Model model(input);
  const std::vector<uint8_t> pre = model.PrecopyMask(s_percent);
  std::vector<std::vector<uint64_t>> out(images.size());
  uint64_t base = 0;
  for (size_t j = 0; j < images.size(); ++j) {
    const uint64_t n = BlocksOf(images[j]);
    for (uint64_t b = 0; b < n; ++b)
      if (model.data(base + b) && !pre[base + b]) out[j].push_back(b);
    base += n;
  }
  return out;
}

Result<Prediction> Predict(const PredictInput& input) {
  if (auto s = ValidatePredictInput(input); !s) return s.error();
  std::vector<double> ss = input.s_percent;
  if (ss.empty())
    for (int s = 0; s <= 100; s += 5) ss.push_back(s);
  const Model model(input);
  Prediction out;
  out.data_bytes = model.data_bytes();
  out.writes_per_s = model.writes_per_s();
  for (double s : ss) out.rows.push_back(model.Row(s));
  out.precopy = model.Row(100);

  // The recommendation (README "Profile and predict", choices 9-10).
  auto better = [](const PredictRow* a, const PredictRow& b, bool by_time) {
    if (!a) return true;
    const double x = by_time ? a->total_s : a->cost, y = by_time ? b.total_s : b.cost;
    const double tol = 1e-9 * std::max({1.0, std::abs(x), std::abs(y)});
    if (y < x - tol) return true;
    if (y > x + tol) return false;
    return b.s_percent > a->s_percent;
  };
  std::vector<PredictRow> all = out.rows;
  all.push_back(out.precopy);
  const PredictRow* pick = nullptr;
  for (const PredictRow& row : all)
    if (row.converges && row.meets_deadline && better(pick, row, false)) pick = &row;
  const bool has_deadline = input.deadline_s > 0;
  if (pick) {
    if (pick->s_percent >= 100) {
      out.reason = has_deadline ? "pure pre-copy converges and meets the deadline at the lowest cost"
                                : "pure pre-copy converges at the lowest cost";
    } else if (!out.precopy.converges) {
      out.reason = Format("pre-copy does not converge (p = %.2f); S = %g converges%s at the lowest cost "
                          "(stall %.1f s, remote uptime %.1f s)",
                          out.precopy.p_converge, pick->s_percent, has_deadline ? " and meets the deadline" : "",
                          pick->stall_s, pick->remote_s);
    } else if (!out.precopy.meets_deadline) {
      out.reason = Format("pre-copy converges but needs %.1f s, over the %.1f s deadline; S = %g meets it at the "
                          "lowest cost",
                          out.precopy.total_s, input.deadline_s, pick->s_percent);
    } else {
      out.reason = Format("S = %g costs less than pre-copy (%.2f s vs %.2f s)", pick->s_percent, pick->cost,
                          out.precopy.cost);
    }
  } else {
    for (const PredictRow& row : all)
      if (row.meets_deadline && better(pick, row, false)) pick = &row;
    if (pick) {
      out.reason = Format("no S converges; S = %g meets the deadline at the lowest cost (expect a disk limit or "
                          "mirrored-write stall)",
                          pick->s_percent);
    } else {
      for (const PredictRow& row : all)
        if (better(pick, row, true)) pick = &row;
      out.deadline_met = false;
      out.reason = Format("no S meets the %.1f s deadline; S = %g is the fastest (%.1f s)", input.deadline_s,
                          pick->s_percent, pick->total_s);
    }
  }
  out.recommended_s = pick->s_percent;
  return out;
}

}  // namespace migratefs::policy
