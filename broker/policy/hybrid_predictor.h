// Profile and predict: seed 002's modelling (Zhang, Lam, Wang, "Adaptive Live VM
// Migration over a WAN") applied to MigrateFS's disk images. broker/policy/README.md
// "Profile and predict (seed 002)".
//
// Input: a per-image write profile (per-block write counts over a window of W seconds,
// optionally read counts and which blocks hold data), the link rate, the RTT and an
// optional deadline. Output, for hybrid copy with S = 0, 5, ..., 100 % of the data
// blocks pre-copied (S = 100 is pure pre-copy, today's behaviour): the expected total
// time T, the remote uptime U (time in post-copy), the expected on-demand fetches and
// the stall they cost, the stall of mirrored writes in the final phase, whether the
// pre-copy part converges, and the S we recommend with the reason.
//
// Model (every choice is listed in the README section):
//  - Each block's writes are a Poisson process of rate count/W (seed 002); reads too.
//  - Hybrid S pre-copies the round(S% of the data blocks) *coldest* blocks (fewest
//    writes; ties: most reads, then position). The sender sweeps them in image order:
//    pass 0 (phase 1) sends all, later passes (phase 2) resend what was written since
//    the block was last visited. Phase 2 ends as net/migration/convergence.h decides:
//    "drained" (what is dirty goes in a quarter second, at least 8 blocks) = the
//    pre-copy converges; "no convergence" (fresh dirty blocks in the 2 s window reach
//    90 % of the send rate, modelled with the window's Poisson noise) or "stalled" =
//    it does not. Then phase 3 drains the dirty rest while writes to pre-copied blocks
//    are mirrored, and the VM switches to the target.
//  - Post-copy: the rest of the data blocks is pulled in image order at the link rate
//    (U = remaining bytes / rate); the first read or write of a block that has not
//    arrived fetches it on demand and stalls for RTT + block/rate.
//  - Expectations are mean-field: the expected visit times of the sweep are used in the
//    Poisson probabilities (the test checks this against a Monte-Carlo run of the
//    sender, the convergence rule and the pull).
//
// Units: bytes, bytes/s, seconds (double); block numbers count from 0 in each image.
// Pure: no I/O, no clocks, no threads, no randomness.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "migratefs/status.h"

namespace migratefs::policy {

inline constexpr uint64_t kDefaultBlockBytes = 512 * 1024;  // the daemon's block size
// Largest accepted image set, in blocks (4 TiB at 512 KiB): the model keeps a few
// numbers per block.
inline constexpr uint64_t kMaxPredictBlocks = uint64_t(1) << 23;

struct BlockCount {
  uint64_t block = 0;  // block number in its image
  double count = 0;    // events in the profile's window, >= 0
};

struct BlockRange {
  uint64_t first = 0;  // first block
  uint64_t count = 0;  // number of blocks, >= 1
};

// One image's profile, taken on the source while the VM runs.
struct ImageProfile {
  std::string name;                        // used in messages only
  uint64_t image_bytes = 0;                // > 0
  uint64_t block_bytes = kDefaultBlockBytes;  // > 0; the same for every image
  double window_s = 0;                     // W, > 0: how long the counts were taken over
  std::vector<BlockCount> writes;          // sparse; a block at most once; others: 0
  std::vector<BlockCount> reads;           // optional, same window; others: 0
  bool data_known = false;                 // false: every block holds data
  std::vector<BlockRange> data;            // with data_known: the blocks holding data
                                           // (a block written in the window always does)
  double write_bytes = 4096;               // mean bytes per write (> 0): mirrored traffic
};

// The phase-2 -> phase-3 rule of net/migration/convergence.h; defaults are the daemon's.
struct ConvergenceRule {
  double drain_s = 0.25;          // "drained": dirty bytes <= max(min blocks, rate * this)
  double drain_min_blocks = 8;
  double ratio = 0.9;             // "no convergence": dirty rate >= ratio * send rate ...
  double window_s = 2;            // ... measured over this window, judged after it
  double stall_s = 3;             // "stalled": not 5 % smaller for max(this, one pass)
  bool noisy = true;              // model the window's Poisson noise (false: mean only)
};

// Weights of the cost J(S) = stall * stall_s + remote_uptime * U, seconds; seed 002's
// Gamma = 1 / (w1 * downtime + w2 * penalty) is 1 / J (MigrateFS has no storage
// downtime: phase 3 and the hybrid switch are live).
struct PredictWeights {
  double stall = 1.0;             // per second the VM waits (fetches, mirrored writes)
  double remote_uptime = 0.01;    // per second the VM depends on both hosts
};

struct PredictInput {
  std::vector<ImageProfile> images;  // in start order (the sweep and the pull walk them so)
  double net_bps = 0;                // link rate for the migration, > 0
  double rtt_s = 0;                  // >= 0
  double deadline_s = 0;             // seconds from the start; 0 = none
  std::vector<double> s_percent;     // rows to compute, each 0..100; empty = 0, 5, ..., 100
  ConvergenceRule rule;
  PredictWeights weights;
};

struct PredictRow {
  double s_percent = 0;
  uint64_t precopy_blocks = 0;      // data blocks pre-copied
  double precopy_bytes = 0;
  double remote_bytes = 0;          // data left for post-copy
  double bulk_s = 0;                // phase 1 (pass 0 over the pre-copied blocks)
  double iterate_s = 0;             // phase 2, expected
  double final_s = 0;               // phase 3 drain, expected
  double total_s = 0;               // T = bulk + iterate + final + remote
  double remote_s = 0;              // U: switch to last block pulled
  double fetches = 0;               // expected on-demand fetches during U
  double fetch_stall_s = 0;         // fetches * (RTT + block / rate)
  double mirrored_writes = 0;       // expected writes mirrored during phase 3
  double mirror_stall_s = 0;        // mirrored_writes * (RTT + write_bytes / rate)
  double stall_s = 0;               // fetch + mirror stall
  double p_converge = 0;            // probability phase 2 ends "drained"
  bool converges = false;           // p_converge >= 0.5
  double passes = 0;                // phase-2 passes of the mean-field sweep
  bool meets_deadline = true;       // T <= deadline (true without one)
  double cost = 0;                  // J(S), seconds
};

struct Prediction {
  std::vector<PredictRow> rows;     // one per s_percent, in the order asked
  PredictRow precopy;               // pure pre-copy (S = 100)
  double data_bytes = 0;            // all data blocks
  double writes_per_s = 0;          // the profile's total write rate
  double recommended_s = 100;
  bool deadline_met = true;         // the recommended row meets the deadline
  std::string reason;               // one line: why this S
};

// invalid_argument naming the field: images (empty), images[j].image_bytes (0),
// .block_bytes (0, or not the same as images[0]), .window_s, .writes[k] (block out of
// the image, listed twice, count < 0 or not finite), .reads[k], .data[k], .write_bytes,
// net_bps, rtt_s, deadline_s, s_percent[k] (outside 0..100), rule.*, weights.*; and
// more than kMaxPredictBlocks blocks in all.
Status ValidatePredictInput(const PredictInput& input);

// One row. S must be in 0..100 (error naming s_percent otherwise).
Result<PredictRow> PredictAt(const PredictInput& input, double s_percent);

// Every row, the pre-copy row and the recommendation:
//  1. among rows that converge and meet the deadline (every row meets "no deadline"),
//     the lowest cost J; ties go to the larger S (less remote dependence);
//  2. if none: among rows that meet the deadline, the lowest J (needs a disk limit or
//     accepts mirrored-write stall);
//  3. if none meets it: the smallest T (deadline_met = false).
Result<Prediction> Predict(const PredictInput& input);

// The data blocks hybrid copy at S % leaves for post-copy, so the daemon pre-copies
// exactly the set the model assumed (the round(S % of all data blocks) coldest ones
// go first; these are the rest, the hottest): one ascending list per image, in the
// order of `images`. Errors as ValidatePredictInput (images[j].*) and s_percent.
// With no writes in a profile every data block is equally cold and position decides:
// the first S % of the data blocks in start order are pre-copied.
Result<std::vector<std::vector<uint64_t>>> PostcopyBlocks(const std::vector<ImageProfile>& images, double s_percent);

}  // namespace migratefs::policy
