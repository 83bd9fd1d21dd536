// Alg. 2 (setNetworkLimit) of seed 004: TCP-like AIMD on the migration's network
// limit. The numbered comments refer to the paper's pseudo-code lines; README.md
// lists how we fill in what the pseudo-code leaves open.
#include <algorithm>

#include "broker/policy/format.h"
#include "migratefs/policy.h"

namespace migratefs::policy {

using internal::Format;
using internal::Mbs;

std::optional<double> SetNetworkLimit(const Config& config, double net_rate_bps,
                                      bool backoff, TaskState* state,
                                      std::vector<std::string>* reasons) {
  // task.netrate: the observed rate, but never above the limit in force (a rate
  // sample a little over the limit is measurement noise, not headroom).
  double rate = std::max(net_rate_bps, 0.0);
  if (state->network_limit_bps) rate = std::min(rate, *state->network_limit_bps);
  auto floor = [&](double bps) { return std::max(bps, config.min_network_bps); };
  auto note = [&](std::string line) {
    if (reasons) reasons->push_back(std::move(line));
  };

  switch (state->last_action) {
    case NetAction::kNone:
      // Not in the paper: lastAction is undefined before the first limit. Congestion
      // with no limit starts a decrease exactly like line 3; no congestion keeps
      // the task unlimited.
      if (backoff) {
        state->network_limit_bps = floor(rate / 2);
        state->last_action = NetAction::kReduce;
        note(Format("alg2: first backoff, limit = netrate/2 = %.1f MB/s",
                    Mbs(*state->network_limit_bps)));
      }
      break;

    case NetAction::kReduce:
      if (backoff) {  // lines 2-3: congestion persists after a reduction
        state->network_limit_bps = floor(rate / 2);
        note(Format("alg2: congestion persists, limit = netrate/2 = %.1f MB/s",
                    Mbs(*state->network_limit_bps)));
      } else {  // lines 5-6: this rate causes no congestion; hold it
        state->last_ok_net_bps = rate;
        state->network_limit_bps = floor(rate);
        // The paper never updates lastAction; holding is the first step of the
        // increase phase, otherwise lines 11-17 would be unreachable.
        state->last_action = NetAction::kIncrease;
        note(Format("alg2: quiet after reduce, lastOK = limit = %.1f MB/s", Mbs(rate)));
      }
      break;

    case NetAction::kIncrease:
      if (backoff) {  // line 10: the last increase caused congestion; revert
        const double revert = state->last_ok_net_bps > 0 ? state->last_ok_net_bps : rate / 2;
        state->network_limit_bps = floor(revert);
        state->last_action = NetAction::kReduce;  // further backoff halves (text)
        note(Format("alg2: congestion after increase, revert to lastOK %.1f MB/s",
                    Mbs(*state->network_limit_bps)));
      } else {
        state->last_ok_net_bps = rate;  // line 12
        if (state->quiet_periods > config.quiet_periods) {  // lines 13-14
          state->network_limit_bps.reset();
          state->last_action = NetAction::kNone;
          note(Format("alg2: %d quiet periods > n = %d, network limit dropped",
                      state->quiet_periods, config.quiet_periods));
        } else {  // line 16
          state->network_limit_bps = floor(rate + config.increase_bps);
          note(Format("alg2: quiet, limit = netrate + C = %.1f MB/s",
                      Mbs(*state->network_limit_bps)));
        }
      }
      break;
  }
  return state->network_limit_bps;
}

}  // namespace migratefs::policy
