// Migration's hybrid pre-copy set (issue 10; seed 002): which data blocks phases 1-2
// send before the hand-over. See migration.h and net/README.md "Hybrid copy".
//
// Why a set at all: hybrid S % hands over once at most (100 - S) % of the data blocks
// are missing. Sweeping the whole image in address order gets there slowly under a
// writer spread over it, since each pass re-sends what was written behind the scan;
// and the predictor (broker/policy/hybrid_predictor.h) assumes the S % *coldest*
// blocks are pre-copied, the hot rest left for post-copy. So the first connection
// picks that set with the predictor's own function, and the scan passes the others by
// until phase 3 (they stay set in the dirty bitmap: missing, never lost).
#include <spdlog/spdlog.h>

#include <algorithm>

#include "net/migration/migration.h"

namespace migratefs::migration {

namespace {
// The stored profile's counts, fitted to the image as it is now: blocks past its end
// are dropped (it may have shrunk since), and the data map is today's.
policy::ImageProfile FitProfile(const policy::ImageProfile* stored, ImageMigration& img) {
  policy::ImageProfile p;
  p.name = img.name();
  p.image_bytes = img.CurrentSize();
  p.block_bytes = img.block_size();
  p.window_s = 1;  // no profile: no counts, so any window
  p.data_known = true;
  for (const auto& [first, last] : img.DataRuns()) p.data.push_back({first, last - first + 1});
  if (stored == nullptr || stored->block_bytes != img.block_size() || !(stored->window_s > 0)) return p;
  const uint64_t blocks = img.BlocksFor(p.image_bytes);
  p.window_s = stored->window_s;
  auto fit = [blocks](const std::vector<policy::BlockCount>& in, std::vector<policy::BlockCount>* out) {
    for (const policy::BlockCount& c : in)
      if (c.block < blocks) out->push_back(c);
  };
  fit(stored->writes, &p.writes);
  fit(stored->reads, &p.reads);
  return p;
}
}  // namespace

void Migration::DeferHottest() {
  if (copy_.precopy_pct >= 100) return;
  std::vector<policy::ImageProfile> profiles;
  bool profiled = false;
  for (auto& img : images_) {
    const policy::ImageProfile* stored = nullptr;
    for (const policy::ImageProfile& p : write_profiles_)
      if (p.name == img->name()) stored = &p;
    profiled |= stored != nullptr;
    profiles.push_back(FitProfile(stored, *img));
  }
  auto postcopy = policy::PostcopyBlocks(profiles, double(copy_.precopy_pct));
  if (!postcopy.ok()) {  // e.g. an empty image: nothing to choose, sweep it all
    spdlog::warn("migration {}: pre-copying in address order: {}", id_, postcopy.error().message);
    return;
  }
  uint64_t deferred = 0;
  for (size_t j = 0; j < images_.size(); j++) {
    ImageMigration& img = *images_[j];
    // Only what is missing: a block the target already holds (an earlier attempt's
    // copy, compared equal) has nothing to defer.
    for (uint64_t b : postcopy.value()[j])
      if (img.bitmap().Test(b) && img.deferred().Set(b)) deferred++;
  }
  deferring_.store(true);
  spdlog::info("migration {}: hybrid {} %: {} of {} data blocks left for post-copy ({})", id_, copy_.precopy_pct,
               deferred, data_blocks_, profiled ? "the hottest by the last profile" : "no profile: the last by position");
}

void Migration::ReleaseDeferred() {
  if (!deferring_.exchange(false)) return;
  for (auto& img : images_) img->deferred().ClearAll();
  work_bell_.RingAll();
}

bool Migration::Deferred(ImageMigration& img, uint64_t block) const {
  return deferring_.load() && img.deferred().Test(block);
}

uint64_t Migration::DeferredBlocks() const {
  if (!deferring_.load()) return 0;
  uint64_t n = 0;
  for (auto& img : images_) n += img->deferred().count();
  return n;
}

uint64_t Migration::PrecopyDirtyBlocks() const {
  const uint64_t dirty = DirtyBlocks(), deferred = DeferredBlocks();
  return dirty > deferred ? dirty - deferred : 0;
}

}  // namespace migratefs::migration
