// Seed 002's profile-and-predict: closed forms on tiny cases, the deadline logic, the
// refusals, and a Monte-Carlo run of the sender, the convergence rule and the pull
// (written independently of the model) that must agree with the analytic prediction.
#include "broker/policy/hybrid_predictor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <deque>
#include <numeric>
#include <random>
#include <vector>

namespace migratefs::policy {
namespace {

constexpr double kBlock = 524288;
constexpr double kLink = 5e6;  // 40 Mbit/s

ImageProfile Image(uint64_t blocks, double window = 100) {
  ImageProfile im;
  im.name = "vm.img";
  im.image_bytes = blocks * uint64_t(kBlock);
  im.window_s = window;
  return im;
}

PredictInput Input(std::vector<ImageProfile> images, double rate = kLink, double rtt = 0.005) {
  PredictInput in;
  in.images = std::move(images);
  in.net_bps = rate;
  in.rtt_s = rtt;
  return in;
}

const PredictRow& RowAt(const Prediction& p, double s) {
  for (const PredictRow& r : p.rows)
    if (r.s_percent == s) return r;
  ADD_FAILURE() << "no row " << s;
  return p.rows[0];
}

// ---------------------------------------------------------------- closed forms

TEST(HybridPredictorTest, NoWritesTimeIsSizeOverRateForEveryS) {
  ImageProfile im = Image(200);
  im.image_bytes -= 1000;  // a short last block
  auto p = Predict(Input({im}));
  ASSERT_TRUE(p) << p.error().message;
  const double size = double(im.image_bytes);
  ASSERT_EQ(p.value().rows.size(), 21u);
  for (const PredictRow& r : p.value().rows) {
    const double remaining = size - r.precopy_bytes;
    EXPECT_NEAR(r.total_s, size / kLink, 1e-9) << r.s_percent;
    EXPECT_NEAR(r.remote_s, remaining / kLink, 1e-9) << r.s_percent;
    EXPECT_NEAR(r.precopy_blocks, std::llround(r.s_percent * 2), 0) << r.s_percent;
    EXPECT_EQ(r.fetches, 0);
    EXPECT_EQ(r.stall_s, 0);
    EXPECT_TRUE(r.converges);
    EXPECT_EQ(r.p_converge, 1);
  }
  EXPECT_EQ(p.value().recommended_s, 100);  // no stall, no remote uptime
  EXPECT_NEAR(p.value().precopy.total_s, size / kLink, 1e-9);
}

TEST(HybridPredictorTest, HolesAreNeitherSentNorPulled) {
  ImageProfile im = Image(100);
  im.data_known = true;
  im.data = {{10, 20}};              // 20 blocks of data ...
  im.writes = {{90, 0}, {95, 0.0}};  // ... (zero counts do not make data)
  auto p = Predict(Input({im}));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_NEAR(p.value().data_bytes, 20 * kBlock, 0);
  EXPECT_NEAR(RowAt(p.value(), 50).precopy_bytes, 10 * kBlock, 0);
  EXPECT_NEAR(RowAt(p.value(), 50).total_s, 20 * kBlock / kLink, 1e-9);
}

// Two blocks of 1 MB at 1 MB/s; block 1 is read once a second. S = 0 pulls block 0
// in [0, 1] and block 1 in [1, 2]: block 1 is fetched with probability 1 - e^-2.
// S = 50 pre-copies one block: both are cold, the read one goes first (it would be
// fetched), so nothing is fetched.
TEST(HybridPredictorTest, FetchesOfATinyCaseByHand) {
  ImageProfile im;
  im.image_bytes = 2000000;
  im.block_bytes = 1000000;
  im.window_s = 10;
  im.reads = {{1, 10}};
  PredictInput in = Input({im}, 1e6, 0.01);
  in.s_percent = {0, 50, 100};
  auto p = Predict(in);
  ASSERT_TRUE(p) << p.error().message;
  const PredictRow& s0 = p.value().rows[0];
  EXPECT_NEAR(s0.fetches, 1 - std::exp(-2.0), 1e-12);
  EXPECT_NEAR(s0.fetch_stall_s, (1 - std::exp(-2.0)) * (0.01 + 1.0), 1e-12);
  EXPECT_NEAR(s0.total_s, 2, 1e-12);
  EXPECT_NEAR(s0.remote_s, 2, 1e-12);
  const PredictRow& s50 = p.value().rows[1];
  EXPECT_EQ(s50.fetches, 0);
  EXPECT_NEAR(s50.remote_s, 1, 1e-12);
  EXPECT_NEAR(s50.total_s, 2, 1e-12);
  EXPECT_NEAR(s0.cost, s0.fetch_stall_s + 0.01 * 2, 1e-12);
  EXPECT_EQ(p.value().recommended_s, 100);
}

// One written block, last in the image: pass 0 visits it at (N-1) b / r, phase 1 ends
// at N b / r with it dirty with probability 1 - e^{-lambda b / r}: less than 8 blocks,
// so phase 2 is "drained" at once and phase 3 drains it while its writes are mirrored
// (rate r - lambda * write_bytes).
TEST(HybridPredictorTest, OneWrittenBlockByHand) {
  const uint64_t n = 64;
  ImageProfile im = Image(n, 10);
  im.writes = {{n - 1, 30}};  // 3 writes/s
  im.write_bytes = 8192;
  auto row = PredictAt(Input({im}), 100);
  ASSERT_TRUE(row) << row.error().message;
  const double lambda = 3, t_block = kBlock / kLink;
  const double dirty = kBlock * (1 - std::exp(-lambda * t_block));
  const double final_s = dirty / (kLink - lambda * 8192);
  EXPECT_NEAR(row.value().bulk_s, n * t_block, 1e-9);
  EXPECT_NEAR(row.value().iterate_s, 0, 1e-12);
  EXPECT_NEAR(row.value().final_s, final_s, 1e-12);
  EXPECT_NEAR(row.value().total_s, n * t_block + final_s, 1e-9);
  EXPECT_NEAR(row.value().mirrored_writes, lambda * final_s, 1e-12);
  EXPECT_NEAR(row.value().mirror_stall_s, lambda * final_s * (0.005 + 8192 / kLink), 1e-12);
  EXPECT_EQ(row.value().p_converge, 1);
  EXPECT_EQ(row.value().remote_s, 0);
  // Hybrid at S < 100 leaves the written block for post-copy (it is the hottest).
  auto half = PredictAt(Input({im}), 50);
  ASSERT_TRUE(half);
  EXPECT_EQ(half.value().final_s, 0);
  EXPECT_NEAR(half.value().total_s, n * t_block, 1e-9);
  // Pulled last at n/2 * t_block after the switch, accessed 3 times a second.
  EXPECT_NEAR(half.value().fetches, 1 - std::exp(-lambda * (n / 2) * t_block), 1e-12);
}

// A writer that touches 20 blocks a second on a 9.5 blocks/s link: pre-copy cannot
// converge, hybrid can, and is recommended.
TEST(HybridPredictorTest, WriterFasterThanTheLinkRecommendsHybrid) {
  const uint64_t n = 2048;  // 1 GiB
  ImageProfile im = Image(n, 100);
  for (uint64_t b = 0; b < n; ++b) im.writes.push_back({b, 20.0 * 100 / n});  // 20 writes/s in all
  auto p = Predict(Input({im}));
  ASSERT_TRUE(p) << p.error().message;
  const Prediction& pr = p.value();
  EXPECT_FALSE(pr.precopy.converges);
  EXPECT_LT(pr.precopy.p_converge, 0.01);
  EXPECT_LT(pr.recommended_s, 100);
  EXPECT_TRUE(RowAt(pr, pr.recommended_s).converges);
  EXPECT_NE(pr.reason.find("does not converge"), std::string::npos) << pr.reason;
  EXPECT_TRUE(RowAt(pr, 0).converges);  // nothing to pre-copy
  EXPECT_FALSE(RowAt(pr, 100).converges);
  // The mean-field rule says the same.
  PredictInput quiet = Input({im});
  quiet.rule.noisy = false;
  EXPECT_FALSE(PredictAt(quiet, 100).value().converges);
}

TEST(HybridPredictorTest, RemoteUptimeFallsAndPrecopyGrowsWithS) {
  const uint64_t n = 1024;
  ImageProfile im = Image(n, 60);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  for (uint64_t b = 0; b < n; ++b) {
    if (u(rng) < 0.3) im.writes.push_back({b, std::floor(60 * u(rng))});
    if (u(rng) < 0.3) im.reads.push_back({b, std::floor(30 * u(rng))});
  }
  auto p = Predict(Input({im}));
  ASSERT_TRUE(p) << p.error().message;
  const auto& rows = p.value().rows;
  for (size_t k = 1; k < rows.size(); ++k) {
    EXPECT_LT(rows[k].remote_s, rows[k - 1].remote_s) << rows[k].s_percent;
    EXPECT_GT(rows[k].precopy_bytes, rows[k - 1].precopy_bytes);
    EXPECT_LE(rows[k].fetches, rows[k - 1].fetches + 1e-9) << rows[k].s_percent;
    EXPECT_GE(rows[k].bulk_s, rows[k - 1].bulk_s);
  }
  EXPECT_EQ(rows.back().remote_s, 0);
  EXPECT_EQ(rows.back().fetches, 0);
}

// Hot spot: 5 % of the blocks take most writes. Pre-copy converges on the cold 95 %.
ImageProfile HotSpot(uint64_t n, double hot_rate, double cold_rate, double window = 100) {
  ImageProfile im = Image(n, window);
  const uint64_t hot = n / 20, first = n / 3;
  for (uint64_t b = 0; b < n; ++b) {
    const bool is_hot = b >= first && b < first + hot;
    const double rate = is_hot ? hot_rate : cold_rate;
    if (rate > 0) im.writes.push_back({b, rate * window});
  }
  return im;
}

TEST(HybridPredictorTest, DeadlineDecidesBetweenPrecopyAndHybrid) {
  const uint64_t n = 512;
  ImageProfile im = HotSpot(n, 0.2, 0.0005);  // converging pre-copy, a few passes
  PredictInput in = Input({im});
  auto free = Predict(in);
  ASSERT_TRUE(free) << free.error().message;
  const PredictRow pre = free.value().precopy;
  ASSERT_TRUE(pre.converges);
  const double base = n * kBlock / kLink;
  ASSERT_GT(pre.total_s, base * 1.01);  // re-sends cost time
  EXPECT_EQ(free.value().recommended_s, 100) << free.value().reason;

  // A deadline between the hybrid rows' T (= base, no re-sends when the hot blocks
  // are left out) and pre-copy's T: hybrid wins.
  in.deadline_s = (base + pre.total_s) / 2;
  auto tight = Predict(in);
  ASSERT_TRUE(tight);
  EXPECT_LT(tight.value().recommended_s, 100);
  EXPECT_TRUE(tight.value().deadline_met);
  EXPECT_FALSE(tight.value().precopy.meets_deadline);
  const PredictRow& pick = RowAt(tight.value(), tight.value().recommended_s);
  EXPECT_TRUE(pick.meets_deadline);
  EXPECT_TRUE(pick.converges);
  EXPECT_NE(tight.value().reason.find("deadline"), std::string::npos) << tight.value().reason;

  // Below every T: the fastest row, deadline_met false.
  in.deadline_s = base / 2;
  auto impossible = Predict(in);
  ASSERT_TRUE(impossible);
  EXPECT_FALSE(impossible.value().deadline_met);
  double fastest = 1e300;
  for (const PredictRow& r : impossible.value().rows) fastest = std::min(fastest, r.total_s);
  EXPECT_NEAR(RowAt(impossible.value(), impossible.value().recommended_s).total_s, fastest, 1e-9);
  EXPECT_NE(impossible.value().reason.find("no S meets"), std::string::npos);
}

TEST(HybridPredictorTest, HotSpotLeavesTheHotBlocksForPostCopy) {
  const uint64_t n = 2048;
  auto p = Predict(Input({HotSpot(n, 2, 0)}));  // 102 blocks rewritten twice a second
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_FALSE(p.value().precopy.converges);
  const PredictRow& s95 = RowAt(p.value(), 95);
  EXPECT_TRUE(s95.converges);
  EXPECT_NEAR(s95.precopy_blocks, std::llround(0.95 * n), 0);
  EXPECT_EQ(s95.final_s, 0);  // the pre-copied blocks are never written
  EXPECT_EQ(p.value().recommended_s, 95) << p.value().reason;
}

TEST(HybridPredictorTest, SeveralImagesAreSweptOneAfterTheOther) {
  ImageProfile a = Image(100), b = Image(50);
  b.name = "data.img";
  b.reads = {{49, 100}};
  PredictInput in = Input({a, b}, kLink, 0);
  in.s_percent = {0};
  auto p = Predict(in);
  ASSERT_TRUE(p) << p.error().message;
  // The last block of the second image is pulled last, at 150 block times.
  EXPECT_NEAR(p.value().rows[0].fetches, 1 - std::exp(-1.0 * 150 * kBlock / kLink), 1e-12);
  EXPECT_NEAR(p.value().rows[0].total_s, 150 * kBlock / kLink, 1e-9);
}

// ---------------------------------------------------------------- the daemon's set

TEST(HybridPredictorTest, PostcopyBlocksAreTheHottestAcrossImages) {
  ImageProfile a = Image(10), b = Image(6);
  b.name = "data.img";
  a.writes = {{2, 5}, {7, 1}};
  b.writes = {{0, 9}, {5, 3}};
  b.reads = {{4, 50}};  // read, never written: as cold as it gets, pre-copied first
  a.data_known = true;
  a.data = {{0, 8}};    // blocks 8 and 9 are holes: never listed
  auto set = PostcopyBlocks({a, b}, 50);  // 8 + 6 = 14 data blocks: 7 stay remote
  ASSERT_TRUE(set) << set.error().message;
  ASSERT_EQ(set.value().size(), 2u);
  // The four written blocks are the hottest; of the ten unwritten blocks, b's read one
  // goes first, then position decides: a's 0,1,3,4,5,6 are pre-copied, b's 1,2,3 not.
  EXPECT_EQ(set.value()[0], (std::vector<uint64_t>{2, 7}));
  EXPECT_EQ(set.value()[1], (std::vector<uint64_t>{0, 1, 2, 3, 5}));
  // The predictor's row pre-copies exactly as many blocks as the set leaves out.
  auto row = PredictAt(Input({a, b}), 50);
  ASSERT_TRUE(row) << row.error().message;
  EXPECT_EQ(row.value().precopy_blocks, 14u - 7u);
}

TEST(HybridPredictorTest, PostcopyBlocksAtTheEnds) {
  auto none = PostcopyBlocks({Image(4)}, 100);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none.value()[0].empty());
  auto all = PostcopyBlocks({Image(4)}, 0);
  ASSERT_TRUE(all);
  EXPECT_EQ(all.value()[0], (std::vector<uint64_t>{0, 1, 2, 3}));
  EXPECT_FALSE(PostcopyBlocks({Image(4)}, 101));
  EXPECT_FALSE(PostcopyBlocks({}, 50));
}

TEST(HybridPredictorTest, RefusalsNameTheField) {
  struct Case {
    const char* names;
    std::function<void(PredictInput*)> spoil;
  };
  const std::vector<Case> cases = {
      {"images", [](PredictInput* in) { in->images.clear(); }},
      {"images[0] (vm.img).image_bytes", [](PredictInput* in) { in->images[0].image_bytes = 0; }},
      {".block_bytes", [](PredictInput* in) { in->images[0].block_bytes = 0; }},
      {"images[1] (vm.img).block_bytes", [](PredictInput* in) {
         in->images.push_back(in->images[0]);
         in->images[1].block_bytes = 4096;
       }},
      {".window_s", [](PredictInput* in) { in->images[0].window_s = 0; }},
      {".window_s", [](PredictInput* in) { in->images[0].window_s = -3; }},
      {".write_bytes", [](PredictInput* in) { in->images[0].write_bytes = 0; }},
      {".writes[1]: block 10 is outside", [](PredictInput* in) { in->images[0].writes = {{1, 1}, {10, 1}}; }},
      {".writes[1]: block 2 is listed twice", [](PredictInput* in) { in->images[0].writes = {{2, 1}, {2, 1}}; }},
      {".writes[0]: count", [](PredictInput* in) { in->images[0].writes = {{2, -1}}; }},
      {".reads[0]: count", [](PredictInput* in) { in->images[0].reads = {{2, NAN}}; }},
      {".data[0]", [](PredictInput* in) {
         in->images[0].data_known = true;
         in->images[0].data = {{5, 6}};
       }},
      {".data: given", [](PredictInput* in) { in->images[0].data = {{0, 1}}; }},
      {"net_bps", [](PredictInput* in) { in->net_bps = 0; }},
      {"net_bps", [](PredictInput* in) { in->net_bps = -5; }},
      {"net_bps", [](PredictInput* in) { in->net_bps = INFINITY; }},
      {"rtt_s", [](PredictInput* in) { in->rtt_s = -0.001; }},
      {"deadline_s", [](PredictInput* in) { in->deadline_s = -1; }},
      {"s_percent[1]: 101", [](PredictInput* in) { in->s_percent = {0, 101}; }},
      {"s_percent[0]: -5", [](PredictInput* in) { in->s_percent = {-5}; }},
      {"rule.window_s", [](PredictInput* in) { in->rule.window_s = 0; }},
      {"weights.stall", [](PredictInput* in) { in->weights.stall = -1; }},
      {"more than", [](PredictInput* in) { in->images[0].image_bytes = (kMaxPredictBlocks + 1) * uint64_t(kBlock); }},
  };
  for (const Case& c : cases) {
    PredictInput in = Input({Image(10)});
    c.spoil(&in);
    auto p = Predict(in);
    ASSERT_FALSE(p) << c.names;
    EXPECT_EQ(p.error().code, errc::kInvalidArgument);
    EXPECT_NE(p.error().message.find(c.names), std::string::npos) << c.names << ": " << p.error().message;
  }
  auto at = PredictAt(Input({Image(10)}), 100.5);
  ASSERT_FALSE(at);
  EXPECT_NE(at.error().message.find("s_percent"), std::string::npos);
}

// ---------------------------------------------------------------- Monte Carlo
//
// An independent, event-driven run of what the model describes: Poisson writes and
// reads per block; one sender sweeping the pre-copied blocks in order (bit cleared at
// the start of a send), the daemon's convergence watch on 20 ms ticks over 2 s windows
// of sent bytes and fresh dirty bits (net/migration/convergence.cc), the phase-3 drain
// with mirrored writes, and the post-copy pull with on-demand fetches served first.

struct Scenario {
  std::vector<double> bytes, write, access;  // per block
  double block = kBlock, rate = kLink, rtt = 0.005, write_bytes = 4096;
};

struct Outcome {
  double total = 0, remote = 0, fetches = 0, mirrored = 0, converged = 0;
};

class Sim {
 public:
  Sim(const Scenario& sc, double s, uint64_t seed) : sc_(sc), rng_(seed) {
    const size_t n = sc.bytes.size();
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
      if (sc.write[x] != sc.write[y]) return sc.write[x] < sc.write[y];
      return sc.access[x] > sc.access[y];
    });
    in_pre_.assign(n, false);
    const size_t k = size_t(std::llround(s / 100 * double(n)));
    for (size_t j = 0; j < k; ++j) in_pre_[order[j]] = true;
    for (size_t i = 0; i < n; ++i) {
      if (in_pre_[i]) {
        pre_.push_back(i);
        pre_write_rate_ += sc.write[i];
      }
      total_write_ += sc.write[i];
    }
    cumulative_.resize(n);
    std::partial_sum(sc.write.begin(), sc.write.end(), cumulative_.begin());
    next_write_ = Exp(total_write_);
  }

  Outcome Run() {
    Outcome out;
    const double sw = PreCopy(&out);
    const double drain_rate = sc_.rate - std::min(pre_write_rate_ * sc_.write_bytes, sc_.rate / 2);
    const double t3 = dirty_bytes_ / drain_rate;
    // Mirrored writes: writes to pre-copied blocks during the drain.
    while (next_write_ < sw + t3) {
      if (in_pre_[WriteBlock()]) out.mirrored += 1;
      next_write_ += Exp(total_write_);
    }
    const double ts = sw + t3;
    out.remote = PostCopy(&out.fetches);
    out.total = ts + out.remote;
    return out;
  }

 private:
  double Exp(double rate) {
    if (rate <= 0) return 1e300;
    return std::exponential_distribution<double>(rate)(rng_);
  }
  size_t WriteBlock() {
    const double x = std::uniform_real_distribution<double>(0, total_write_)(rng_);
    return std::min<size_t>(std::upper_bound(cumulative_.begin(), cumulative_.end(), x) - cumulative_.begin(),
                            cumulative_.size() - 1);
  }

  // Phases 1 and 2; returns the switch time and leaves the dirty bytes in dirty_bytes_.
  double PreCopy(Outcome* out) {
    if (pre_.empty()) {
      out->converged = 1;
      return 0;
    }
    std::vector<bool> dirty(sc_.bytes.size(), false);
    for (size_t i : pre_) dirty[i] = true;
    size_t dirty_count = pre_.size();
    double dirty_sum = 0;  // bytes of the dirty blocks
    for (size_t i : pre_) dirty_sum += sc_.bytes[i];
    std::deque<double> fresh;                       // times of fresh dirty bits
    std::deque<std::pair<double, double>> sends;    // (completion time, bytes)
    double t = 0, tick = 0.02, watch_start = -1, best = 1e300, best_at = 0;
    size_t cursor = 0;
    bool bulk = true;
    auto writes_until = [&](double until) {
      while (next_write_ <= until) {
        const size_t b = WriteBlock();
        if (in_pre_[b] && !dirty[b]) {
          dirty[b] = true;
          ++dirty_count;
          dirty_sum += sc_.bytes[b];
          fresh.push_back(next_write_);
        }
        next_write_ += Exp(total_write_);
      }
    };
    auto dirty_bytes = [&] { return dirty_sum; };
    // One tick of the watch; true = switch now.
    auto judge = [&](double now, double in_flight) {
      const double w = 2.0;
      while (!fresh.empty() && fresh.front() <= now - w) fresh.pop_front();
      while (!sends.empty() && sends.front().first <= now - w) sends.pop_front();
      double sent = 0;
      for (auto& s : sends)
        if (s.first <= now) sent += s.second;
      size_t fresh_n = 0;
      for (double f : fresh) fresh_n += f <= now;
      const double send_bps = sent / w, dirty_bps = double(fresh_n) * sc_.block / w;
      const double left = dirty_bytes() + in_flight;
      if (left <= std::max(8 * sc_.block, send_bps * 0.25)) {
        out->converged = 1;
        dirty_bytes_ = left;
        return true;
      }
      if (now - watch_start >= 2 && send_bps > 0 && dirty_bps >= 0.9 * send_bps) {
        dirty_bytes_ = left;
        return true;
      }
      if (send_bps <= 0) return false;
      const double nd = double(dirty_count);
      if (best > 1e299 || nd < best - std::floor(best / 20)) {
        best = nd;
        best_at = now;
        return false;
      }
      if (now - best_at >= std::max(3.0, left / send_bps)) {
        dirty_bytes_ = left;
        return true;
      }
      return false;
    };
    for (;;) {
      // Next dirty pre-copied block from the cursor, wrapping (a wrap ends a pass).
      size_t found = pre_.size();
      for (size_t step = 0; step < pre_.size(); ++step) {
        size_t j = cursor + step;
        if (j >= pre_.size()) {
          j -= pre_.size();
          if (bulk) {  // pass 0 is over: phase 2, the watch starts
            bulk = false;
            watch_start = t;
          }
        }
        if (dirty[pre_[j]]) {
          found = j;
          break;
        }
      }
      if (found == pre_.size()) {  // nothing dirty: wait for a write or a tick
        if (bulk) {
          bulk = false;
          watch_start = t;
        }
        const double until = std::min(next_write_, tick);
        writes_until(until);
        t = until;
        while (tick <= t) {
          if (!bulk && judge(tick, 0)) return tick;
          tick += 0.02;
        }
        continue;
      }
      if (found < cursor && bulk) {
        bulk = false;
        watch_start = t;
      }
      const size_t b = pre_[found];
      cursor = found + 1;
      dirty[b] = false;
      --dirty_count;
      dirty_sum -= sc_.bytes[b];
      const double end = t + sc_.bytes[b] / sc_.rate;
      while (tick <= end) {
        writes_until(tick);
        if (!bulk && judge(tick, sc_.bytes[b] * (end - tick) / (end - t))) return tick;
        tick += 0.02;
      }
      writes_until(end);
      sends.emplace_back(end, sc_.bytes[b]);
      t = end;
      if (cursor >= pre_.size() && bulk) {
        bulk = false;
        watch_start = t;
      }
    }
  }

  // The pull after the switch; returns U and counts fetches.
  double PostCopy(double* fetches) {
    std::vector<size_t> rest;
    for (size_t i = 0; i < sc_.bytes.size(); ++i)
      if (!in_pre_[i]) rest.push_back(i);
    if (rest.empty()) return 0;
    // First access of each remote block, relative to the switch.
    std::vector<std::pair<double, size_t>> first;
    for (size_t i : rest)
      if (sc_.access[i] > 0) first.emplace_back(Exp(sc_.access[i]), i);
    std::sort(first.begin(), first.end());
    std::vector<bool> present(sc_.bytes.size(), false), requested(sc_.bytes.size(), false);
    std::deque<size_t> fetch_queue;
    size_t next_access = 0, pull = 0, left = rest.size();
    double t = 0;
    while (left > 0) {
      // The link is free at t: serve a fetch if one is queued, else pull the next block.
      size_t b;
      if (!fetch_queue.empty()) {
        b = fetch_queue.front();
        fetch_queue.pop_front();
      } else {
        while (pull < rest.size() && (present[rest[pull]] || requested[rest[pull]])) ++pull;
        if (pull == rest.size()) break;
        b = rest[pull++];
      }
      requested[b] = true;
      const double end = t + sc_.bytes[b] / sc_.rate;
      // Accesses before this transfer ends: a block not here yet is a fetch.
      while (next_access < first.size() && first[next_access].first < end) {
        const size_t a = first[next_access++].second;
        if (present[a]) continue;
        *fetches += 1;
        if (!requested[a]) {
          requested[a] = true;
          fetch_queue.push_back(a);
        }
      }
      present[b] = true;
      --left;
      t = end;
    }
    return t;
  }

  const Scenario& sc_;
  std::mt19937_64 rng_;
  std::vector<bool> in_pre_;
  std::vector<size_t> pre_;
  std::vector<double> cumulative_;
  double total_write_ = 0, pre_write_rate_ = 0, next_write_ = 0, dirty_bytes_ = 0;
};

Scenario FromProfile(const ImageProfile& im) {
  Scenario sc;
  const size_t n = (im.image_bytes + im.block_bytes - 1) / im.block_bytes;
  sc.bytes.assign(n, double(im.block_bytes));
  sc.write.assign(n, 0);
  sc.access.assign(n, 0);
  for (const BlockCount& c : im.writes) {
    sc.write[c.block] = c.count / im.window_s;
    sc.access[c.block] += c.count / im.window_s;
  }
  for (const BlockCount& c : im.reads) sc.access[c.block] += c.count / im.window_s;
  sc.write_bytes = im.write_bytes;
  return sc;
}

Outcome Average(const Scenario& sc, double s, int runs, uint64_t seed) {
  Outcome sum;
  for (int k = 0; k < runs; ++k) {
    Outcome o = Sim(sc, s, seed + uint64_t(k) * 7919).Run();
    sum.total += o.total;
    sum.remote += o.remote;
    sum.fetches += o.fetches;
    sum.mirrored += o.mirrored;
    sum.converged += o.converged;
  }
  for (double* v : {&sum.total, &sum.remote, &sum.fetches, &sum.mirrored, &sum.converged}) *v /= runs;
  return sum;
}

void CrossCheck(const ImageProfile& im, const std::vector<double>& ss, int runs) {
  PredictInput in = Input({im});
  Scenario sc = FromProfile(im);
  for (double s : ss) {
    auto row = PredictAt(in, s);
    ASSERT_TRUE(row) << row.error().message;
    const PredictRow& p = row.value();
    const Outcome mc = Average(sc, s, runs, 1000 + uint64_t(s));
    std::printf("  S %5.1f  T %7.2f / %7.2f  U %6.2f / %6.2f  fetches %6.1f / %6.1f  converge %.2f / %.2f  "
                "mirrored %6.1f / %6.1f  (model / Monte Carlo)\n",
                s, p.total_s, mc.total, p.remote_s, mc.remote, p.fetches, mc.fetches, p.p_converge, mc.converged,
                p.mirrored_writes, mc.mirrored);
    SCOPED_TRACE(testing::Message() << "S = " << s << ": model T " << p.total_s << " U " << p.remote_s
                                    << " fetches " << p.fetches << " p_conv " << p.p_converge << " mirrored "
                                    << p.mirrored_writes << " | Monte Carlo T " << mc.total << " U " << mc.remote
                                    << " fetches " << mc.fetches << " converged " << mc.converged << " mirrored "
                                    << mc.mirrored);
    EXPECT_NEAR(p.total_s, mc.total, 0.05 * mc.total);
    EXPECT_NEAR(p.remote_s, mc.remote, 0.02 * mc.remote + 0.5);
    EXPECT_NEAR(p.fetches, mc.fetches, 0.08 * mc.fetches + 2);
    EXPECT_NEAR(p.p_converge, mc.converged, 0.2);
    EXPECT_NEAR(p.mirrored_writes, mc.mirrored, 0.15 * mc.mirrored + 5);
  }
}

// n blocks written and read uniformly at random, writes_s / reads_s per second in all
// (counts over Image's 100 s window).
ImageProfile UniformRandom(uint64_t n, double writes_s, double reads_s) {
  ImageProfile im = Image(n, 100);
  for (uint64_t b = 0; b < n; ++b) {
    im.writes.push_back({b, writes_s * 100 / n});
    im.reads.push_back({b, reads_s * 100 / n});
  }
  return im;
}

// Seed 002's link (40 Mbit/s, 5 ms) and a random writer: 15 writes/s spread evenly over
// a 256 MiB image, random reads; pre-copy does not converge above S ~ 60 %.
TEST(HybridPredictorMonteCarlo, RandomWriterAgreesWithTheModel) {
  CrossCheck(UniformRandom(512, 15.0, 5.0), {0, 25, 50, 75, 100}, 150);
}

// The goal's setting at full size: 1 GiB, 40 Mbit/s, 5 ms, a random writer (20 writes/s)
// and reader (10 reads/s).
TEST(HybridPredictorMonteCarlo, OneGibRandomWriterAgreesWithTheModel) {
  CrossCheck(UniformRandom(2048, 20.0, 10.0), {0, 30, 45, 60, 100}, 40);
}

// A hot spot (5 % of the blocks at 1 write/s each) over a lightly written rest.
TEST(HybridPredictorMonteCarlo, HotSpotAgreesWithTheModel) {
  ImageProfile im = HotSpot(512, 1.0, 0.004);
  CrossCheck(im, {0, 50, 90, 95, 100}, 150);
}

}  // namespace
}  // namespace migratefs::policy
