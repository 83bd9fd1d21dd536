// The simulator's main loop. See simulator.h for the model, README.md for why.
#include "broker/sim/simulator.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "broker/sim/rng.h"

namespace migratefs::sim {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int64_t kNever = std::numeric_limits<int64_t>::min() / 4;
constexpr double kEps = 1e-9;

struct Link {
  double capacity = 0;
  int64_t demand_period = -1;  // period for which demand/hot are valid
  double demand = 0;           // tenants' demand, bytes/s
  bool hot = false;            // host link of a machine in shortage
  // Per tick, valid while stamp == current tick.
  int64_t tick_stamp = -1;
  int sharers = 0;             // copying tasks crossing the link
  int unconstrained = 0;       // of which below their network limit after round 1
  double used = 0;             // migration bytes/s allocated
  double load = 0;             // migration bytes/s actually moved (partial ticks)
  double last_saturated_s = -kInf;  // end of the last tick the link was saturated
  double last_violation_s = -kInf;  // same, while its machine was in shortage
};

enum class Phase { kCopying, kMirroring, kDone };

struct Task {
  uint64_t index = 0;
  double arrival_s = 0, deadline_s = 0;
  bool important = false;
  std::array<uint32_t, 4> path{};
  int path_len = 0;
  double disk_left = 0;
  Phase phase = Phase::kCopying;
  double done_s = 0;
  double rate = 0;  // allocated network rate for the current tick
  policy::TaskState state;
  double next_decision_s = 0;
  // The broker's measurement window (since its last decision).
  double window_start_s = 0, window_net = 0, window_dirty = 0, window_write = 0;
  bool release_pending = false;  // another broker asked us to release bandwidth

  double NetLimit() const { return state.network_limit_bps.value_or(kInf); }
};

class Simulation {
 public:
  Simulation(const Scenario& s, const RunOptions& options)
      : s_(s), options_(options), period_(s.policy_config.period_s),
        ticks_per_period_(std::llround(period_ / s.tick_s)) {
    const uint64_t tors = (s.machines + s.hosts_per_tor - 1) / s.hosts_per_tor;
    links_.resize(2 * s.machines + 2 * tors);
    const double tor_capacity = s.hosts_per_tor * s.link_bps / s.tor_oversubscription;
    for (uint64_t l = 0; l < links_.size(); ++l)
      links_[l].capacity = l < 2 * s.machines ? s.link_bps : tor_capacity;
    hot_extended_to_.assign(s.machines, kNever);
    violation_stamp_.assign(s.machines, -1);
    crossed_stamp_.assign(s.machines, -1);
    tasks_.reserve(s.count);
  }

  Results Run();

 private:
  bool IsHost(uint64_t link) const { return link < 2 * s_.machines; }
  int64_t NaturalHotEnd(uint64_t machine, int64_t period) const;
  int64_t HotEnd(uint64_t machine, int64_t period) const {
    return std::max(hot_extended_to_[machine], NaturalHotEnd(machine, period));
  }
  Link& Touch(uint32_t link);
  void Arrive(uint64_t index, double now);
  void Decide(Task& task, double now);
  void SendReleaseRequest(const Task& from, double now);
  void Allocate();
  void Advance(double now);
  void CheckLinks(double now);
  void ClosePeriod(int64_t period);
  void Complete(Task& task);

  const Scenario& s_;
  const RunOptions& options_;
  const double period_;
  const int64_t ticks_per_period_;
  int64_t tick_ = 0;
  int64_t period_index_ = 0;

  std::vector<Link> links_;
  std::vector<uint32_t> touched_;          // links touched in the current tick
  std::vector<int64_t> hot_extended_to_;   // per machine: last hot period from extensions
  std::vector<int64_t> violation_stamp_;   // per machine: last period counted as violation
  std::vector<int64_t> crossed_stamp_;     // per machine: last hot period crossed
  std::vector<uint64_t> violated_now_;     // machines violated in the current period
  std::vector<Task> tasks_;
  std::vector<uint32_t> active_;           // tasks not done, by index into tasks_
  std::vector<double> migration_times_;
  Results r_;
  PeriodRow row_;                          // counters of the current period
};

int64_t Simulation::NaturalHotEnd(uint64_t machine, int64_t period) const {
  const double p = s_.load_pct / 100;
  for (int64_t start = period; start > period - s_.duration_periods && start >= 0; --start) {
    if (Uniform01(Hash(s_.seed, Stream::kHotSpotStart, machine, start)) < p)
      return start + s_.duration_periods - 1;
  }
  return kNever;
}

Link& Simulation::Touch(uint32_t id) {
  Link& link = links_[id];
  if (link.demand_period != period_index_) {
    link.demand_period = period_index_;
    double mean = s_.tor_mean, sd = s_.tor_stddev;
    Stream stream = Stream::kTorBackground;
    if (IsHost(id)) {
      mean = s_.host_mean, sd = s_.host_stddev, stream = Stream::kHostBackground;
    }
    double fraction = std::clamp(mean + sd * Gaussian(s_.seed, stream, id, period_index_), 0.0, 1.0);
    link.hot = IsHost(id) && HotEnd(id / 2, period_index_) >= period_index_;
    if (link.hot) fraction = std::max(fraction, s_.hot_demand);
    link.demand = fraction * link.capacity;
  }
  if (link.tick_stamp != tick_) {
    link.tick_stamp = tick_;
    link.sharers = link.unconstrained = 0;
    link.used = link.load = 0;
    touched_.push_back(id);
  }
  return link;
}

void Simulation::Arrive(uint64_t i, double now) {
  Task t;
  t.index = i;
  t.arrival_s = static_cast<double>(i) * s_.interval_s;
  t.deadline_s = t.arrival_s + s_.deadline_s;
  t.important = Uniform01(Hash(s_.seed, Stream::kTaskImportant, i, 0)) < s_.important_pct / 100;
  const uint64_t src = UniformInt(Hash(s_.seed, Stream::kTaskSource, i, 0), s_.machines);
  uint64_t dst = UniformInt(Hash(s_.seed, Stream::kTaskTarget, i, 0), s_.machines - 1);
  if (dst >= src) ++dst;
  const uint64_t tor_base = 2 * s_.machines;
  const uint64_t src_tor = src / s_.hosts_per_tor, dst_tor = dst / s_.hosts_per_tor;
  t.path[t.path_len++] = static_cast<uint32_t>(2 * src);  // source host uplink
  if (src_tor != dst_tor) {
    t.path[t.path_len++] = static_cast<uint32_t>(tor_base + 2 * src_tor);      // ToR -> core
    t.path[t.path_len++] = static_cast<uint32_t>(tor_base + 2 * dst_tor + 1);  // core -> ToR
  }
  t.path[t.path_len++] = static_cast<uint32_t>(2 * dst + 1);  // target host downlink
  t.disk_left = s_.disk_bytes;
  t.window_start_s = now;
  t.next_decision_s = now + period_;
  tasks_.push_back(t);
  active_.push_back(static_cast<uint32_t>(tasks_.size() - 1));
  ++r_.tasks;
  if (t.important) ++r_.important_tasks;
}

void Simulation::Decide(Task& t, double now) {
  const double window = now - t.window_start_s;
  policy::Observation obs;
  obs.now_s = now;
  obs.deadline_s = t.deadline_s;
  obs.disk_left_bytes = t.disk_left;
  obs.net_rate_bps = t.window_net / window;
  obs.dirty_rate_bps = t.window_dirty / window;
  obs.disk_write_rate_bps = t.window_write / window;
  obs.vmm_time_s = s_.vmm_time_s;
  obs.important = t.important;
  bool congested = false;
  for (int k = 0; k < t.path_len; ++k) {
    const Link& link = links_[t.path[k]];
    const double last = s_.congestion == Congestion::kSaturated ? link.last_saturated_s
                                                                : link.last_violation_s;
    congested |= last > t.window_start_s;
  }
  obs.backoff = congested || t.release_pending;
  t.release_pending = false;

  policy::Decision d = policy::Decide(s_.policy_config, obs, &t.state);
  ++r_.decisions;
  if (obs.backoff) ++r_.backoff_decisions;
  if (options_.observer) options_.observer(t.index, obs, d);
  if (d.release_request) SendReleaseRequest(t, now);

  t.window_start_s = now;
  t.window_net = t.window_dirty = t.window_write = 0;
  t.next_decision_s += period_;
}

// "Brokers exchange messages directly with each other": the request reaches the
// brokers of tasks that share a section of our path saturated in our last period.
void Simulation::SendReleaseRequest(const Task& from, double now) {
  ++r_.release_requests;
  std::array<uint32_t, 4> saturated{};
  int n = 0;
  for (int k = 0; k < from.path_len; ++k) {
    if (links_[from.path[k]].last_saturated_s > now - period_) saturated[n++] = from.path[k];
  }
  if (n == 0) return;
  for (uint32_t i : active_) {
    Task& other = tasks_[i];
    if (other.index == from.index || other.phase != Phase::kCopying) continue;
    for (int k = 0; k < other.path_len && !other.release_pending; ++k) {
      for (int j = 0; j < n; ++j) other.release_pending |= other.path[k] == saturated[j];
    }
  }
}

// Max-min fair sharing of what the tenants leave, in two rounds: an equal split
// capped by each task's limit, then the leftovers of the links split among the
// tasks that could still use more. Exact for one task per link; close otherwise.
void Simulation::Allocate() {
  for (uint32_t i : active_) {
    Task& t = tasks_[i];
    if (t.phase != Phase::kCopying) continue;
    for (int k = 0; k < t.path_len; ++k) ++Touch(t.path[k]).sharers;
  }
  auto spare = [](const Link& l) { return std::max(0.0, l.capacity - l.demand); };
  for (uint32_t i : active_) {
    Task& t = tasks_[i];
    if (t.phase != Phase::kCopying) continue;
    double share = kInf;
    for (int k = 0; k < t.path_len; ++k) {
      const Link& l = links_[t.path[k]];
      share = std::min(share, spare(l) / l.sharers);
    }
    t.rate = std::min(t.NetLimit(), share);
    for (int k = 0; k < t.path_len; ++k) {
      Link& l = links_[t.path[k]];
      l.used += t.rate;
      if (t.rate < t.NetLimit()) ++l.unconstrained;
    }
  }
  for (uint32_t i : active_) {
    Task& t = tasks_[i];
    if (t.phase != Phase::kCopying || !(t.rate < t.NetLimit())) continue;
    double more = kInf;
    for (int k = 0; k < t.path_len; ++k) {
      const Link& l = links_[t.path[k]];
      more = std::min(more, std::max(0.0, spare(l) - l.used) / l.unconstrained);
    }
    t.rate += std::min(more, t.NetLimit() - t.rate);
  }
}

void Simulation::Advance(double now) {
  const double dt = s_.tick_s;
  for (uint32_t i : active_) {
    Task& t = tasks_[i];
    if (t.phase != Phase::kCopying) continue;
    const double write = std::min(s_.write_bps, t.state.disk_limit_bps.value_or(kInf));
    const double dirty = write * s_.dirty_fraction;
    const double drain = t.rate - dirty;
    double busy = dt;  // seconds of this tick spent copying
    if (drain > 0 && t.disk_left <= drain * dt) {
      busy = t.disk_left / drain;
      t.disk_left = 0;
      t.phase = Phase::kMirroring;
      t.done_s = now + busy + s_.vmm_time_s;
    } else {
      t.disk_left = std::min(s_.disk_bytes, t.disk_left - drain * dt);
    }
    const double sent = t.rate * busy;
    t.window_net += sent;
    t.window_dirty += dirty * busy;
    t.window_write += write * busy;
    r_.bytes_moved += sent;
    row_.migration_bytes += sent;
    if (t.state.network_limit_bps) r_.time_network_limited_s += busy;
    if (t.state.disk_limit_bps) r_.time_disk_limited_s += busy;
    for (int k = 0; k < t.path_len; ++k) links_[t.path[k]].load += sent / dt;
  }
}

void Simulation::CheckLinks(double now) {
  const double end = now + s_.tick_s;
  for (uint32_t id : touched_) {
    Link& l = links_[id];
    if (!(l.load > 0)) continue;
    const bool saturated = l.demand + l.load >= s_.saturation * l.capacity * (1 - kEps);
    if (saturated) l.last_saturated_s = end;
    if (!IsHost(id) || !l.hot) continue;
    const uint64_t m = id / 2;
    if (crossed_stamp_[m] != period_index_) {
      crossed_stamp_[m] = period_index_;
      ++r_.hot_periods_crossed;
      ++row_.hot_machines_crossed;
    }
    if (saturated) {
      l.last_violation_s = end;
      if (violation_stamp_[m] != period_index_) {
        violation_stamp_[m] = period_index_;
        ++r_.sla_violation_periods;
        ++row_.violations;
        violated_now_.push_back(m);
      }
    }
  }
  touched_.clear();
}

void Simulation::ClosePeriod(int64_t period) {
  // A period in which migrations took the whole link of a machine in shortage
  // makes the shortage one period longer (seed 004, Section V.B).
  for (uint64_t m : violated_now_) hot_extended_to_[m] = HotEnd(m, period) + 1;
  violated_now_.clear();
  if (options_.keep_series) {
    row_.period = period;
    row_.time_s = static_cast<double>(period) * period_;
    for (uint32_t i : active_) {
      const Task& t = tasks_[i];
      if (t.phase != Phase::kCopying) continue;
      ++row_.active_tasks;
      if (t.state.network_limit_bps) ++row_.net_limited;
      if (t.state.disk_limit_bps) ++row_.disk_limited;
    }
    r_.series.push_back(row_);
  }
  row_ = PeriodRow{};
  ++r_.periods;
}

void Simulation::Complete(Task& t) {
  t.phase = Phase::kDone;
  ++r_.tasks_completed;
  migration_times_.push_back(t.done_s - t.arrival_s);
  if (t.done_s > t.deadline_s + kEps) {
    ++r_.missed_deadlines;
    if (t.important) ++r_.important_missed;
  }
}

Summary Summarize(std::vector<double> v) {
  Summary s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / v.size();
  auto rank = [&](double q) {  // nearest rank
    size_t k = static_cast<size_t>(std::ceil(q * v.size()));
    return v[std::clamp<size_t>(k, 1, v.size()) - 1];
  };
  s.p50 = rank(0.5), s.p90 = rank(0.9), s.p99 = rank(0.99), s.max = v.back();
  return s;
}

Results Simulation::Run() {
  r_.policy = ToString(s_.policy);
  r_.seed = s_.seed;
  r_.load_pct = s_.load_pct;
  r_.deadline_s = s_.deadline_s;
  r_.machines = s_.machines;
  const double last_arrival = static_cast<double>(s_.count - 1) * s_.interval_s;
  const double stop_s = last_arrival + s_.drain_limit_s;
  uint64_t next_arrival = 0;

  while (true) {
    if (active_.empty()) {
      if (next_arrival == s_.count) break;
      // Nothing moves until the next arrival: jump there.
      const double at = static_cast<double>(next_arrival) * s_.interval_s;
      tick_ = std::max(tick_, static_cast<int64_t>(std::ceil(at / s_.tick_s - kEps)));
    }
    const double now = static_cast<double>(tick_) * s_.tick_s;
    if (now > stop_s + kEps) break;
    for (int64_t p = tick_ / ticks_per_period_; period_index_ < p;) ClosePeriod(period_index_++);

    while (next_arrival < s_.count &&
           static_cast<double>(next_arrival) * s_.interval_s <= now + kEps) {
      Arrive(next_arrival++, now);
    }
    if (s_.policy == PolicyKind::kBroker) {
      for (uint32_t i : active_) {
        Task& t = tasks_[i];
        if (t.phase == Phase::kCopying && now + kEps >= t.next_decision_s) Decide(t, now);
      }
    }
    Allocate();
    Advance(now);
    CheckLinks(now);
    const double end = now + s_.tick_s;
    size_t kept = 0;
    for (uint32_t i : active_) {
      Task& t = tasks_[i];
      if (t.phase == Phase::kMirroring && t.done_s <= end + kEps) Complete(t);
      if (t.phase != Phase::kDone) active_[kept++] = i;
    }
    active_.resize(kept);
    ++tick_;
  }
  ClosePeriod(period_index_);
  for (uint32_t i : active_) {  // never finished: missed
    ++r_.missed_deadlines;
    if (tasks_[i].important) ++r_.important_missed;
  }
  r_.simulated_s = static_cast<double>(tick_) * s_.tick_s;
  r_.migration_time_s = Summarize(std::move(migration_times_));
  return std::move(r_);
}

}  // namespace

Results Simulate(const Scenario& scenario, const RunOptions& options) {
  Simulation sim(scenario, options);
  return sim.Run();
}

}  // namespace migratefs::sim
