// The profile hook (write_profiler.h) and Engine::Profile / Engine::Predict with an
// in-memory hook registry: counts per block, writes acknowledged at once, data blocks
// from SEEK_DATA, and the refusals (missing image, bad name, an image with a hook).
#include "net/migration/write_profiler.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "net/migration/engine.h"
#include "net/migration/refuse_writes_hook.h"

namespace migratefs::migration {
namespace {

constexpr uint64_t kBlock = 64 * 1024;

void Done(void* ctx, uint64_t, int err) { *static_cast<int*>(ctx) = err; }

TEST(WriteProfilerTest, CountsEveryBlockAWriteTouchesAndAcksAtOnce) {
  WriteProfiler p(kBlock, 8);
  int acked = -1;
  p.AfterWrite(0, nullptr, 4096, Completion(Done, &acked, 0));
  EXPECT_EQ(acked, 0);  // before AfterWrite returned
  p.AfterWrite(3 * kBlock + 100, nullptr, 4096, Completion(Done, &acked, 0));
  p.AfterWrite(3 * kBlock + 200, nullptr, 4096, Completion(Done, &acked, 0));
  p.AfterWrite(kBlock - 10, nullptr, 20, Completion(Done, &acked, 0));  // blocks 0 and 1
  p.AfterWrite(9 * kBlock, nullptr, 8192, Completion(Done, &acked, 0));  // beyond the start size
  p.AfterZero(5 * kBlock, 2 * kBlock);                                 // blocks 5, 6
  p.AfterWrite(0, nullptr, 0, Completion(Done, &acked, 0));            // nothing
  auto counts = p.Counts();
  std::map<uint64_t, double> got;
  for (auto& c : counts) got[c.block] = c.count;
  EXPECT_EQ(got, (std::map<uint64_t, double>{{0, 2}, {1, 1}, {3, 2}, {5, 1}, {6, 1}, {9, 1}}));
  EXPECT_EQ(p.writes(), 5u);  // zero-ranges are not writes for the mean
  EXPECT_EQ(p.bytes_written(), 4096u * 3 + 20 + 8192);
  EXPECT_EQ(p.Counts(6).size(), 4u);  // an image cut to 6 blocks
}

TEST(WriteProfilerTest, ConcurrentWritersLoseNothing) {
  WriteProfiler p(kBlock, 4);
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t)
    writers.emplace_back([&] {
      int acked = -1;
      for (int i = 0; i < 10000; ++i) p.AfterWrite(uint64_t(i % 4) * kBlock, nullptr, 512, Completion(Done, &acked, 0));
    });
  for (auto& w : writers) w.join();
  auto counts = p.Counts();
  ASSERT_EQ(counts.size(), 4u);
  for (auto& c : counts) EXPECT_EQ(c.count, 10000);
}

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mfsprofile.XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    dirfd_ = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY);
  }
  void TearDown() override {
    ::close(dirfd_);
    std::filesystem::remove_all(dir_);
  }
  // A sparse file of `blocks` blocks with data in `data` (block numbers).
  void MakeSparse(const std::string& name, uint64_t blocks, const std::vector<uint64_t>& data) {
    int fd = ::open((dir_ + "/" + name).c_str(), O_CREAT | O_RDWR | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, off_t(blocks * kBlock)), 0);
    std::string bytes(4096, 'x');
    for (uint64_t b : data) ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), off_t(b * kBlock + 100)), 4096);
    ::close(fd);
  }
  std::string dir_;
  int dirfd_ = -1;
};

using DataBlocksTest = TempDir;

TEST_F(DataBlocksTest, SeekDataFindsTheBlocksWithData) {
  MakeSparse("s.img", 64, {0, 1, 2, 20, 63});
  int fd = ::open((dir_ + "/s.img").c_str(), O_RDONLY);
  auto d = DataBlocks(fd, 64 * kBlock, kBlock);
  ::close(fd);
  ASSERT_TRUE(d.ok()) << d.error().message;
  // File systems allocate in their own units (4 KiB here, 64 KiB blocks): each range
  // covers at least the written blocks and is merged; tmpfs/ext4/xfs all report these.
  std::vector<bool> is_data(64, false);
  for (auto& r : d.value())
    for (uint64_t b = r.first; b < r.first + r.count; ++b) is_data[b] = true;
  for (uint64_t b : {0, 1, 2, 20, 63}) EXPECT_TRUE(is_data[b]) << b;
  size_t n = std::count(is_data.begin(), is_data.end(), true);
  if (n == 64) GTEST_SKIP() << "no SEEK_DATA on " << dir_;
  EXPECT_EQ(n, 5u);
  EXPECT_EQ(d.value().size(), 3u);  // [0,3) [20,1) [63,1)
}

// An in-memory HookRegistry: attach, detach (only one's own), find.
class MemoryHooks : public HookRegistry {
 public:
  void Attach(dev_t dev, ino_t ino, std::shared_ptr<ImageHook> hook) override {
    std::lock_guard<std::mutex> lock(mu_);
    hooks_[{dev, ino}] = std::move(hook);
  }
  bool Detach(dev_t dev, ino_t ino, const ImageHook* hook) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = hooks_.find({dev, ino});
    if (it == hooks_.end() || it->second.get() != hook) return false;
    hooks_.erase(it);
    return true;
  }
  std::shared_ptr<ImageHook> Find(dev_t dev, ino_t ino) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = hooks_.find({dev, ino});
    return it == hooks_.end() ? nullptr : it->second;
  }
  std::shared_ptr<ImageHook> FindPath(const std::string& path) const {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return nullptr;
    return Find(st.st_dev, st.st_ino);
  }

 private:
  mutable std::mutex mu_;
  std::map<std::pair<dev_t, ino_t>, std::shared_ptr<ImageHook>> hooks_;
};

class EngineProfileTest : public TempDir {
 protected:
  std::unique_ptr<Engine> MakeEngine() {
    MigrationContext ctx;
    ctx.hooks = &hooks_;
    ctx.src_dirfd = dirfd_;
    ctx.block_size = kBlock;
    return std::make_unique<Engine>(std::move(ctx));
  }
  MemoryHooks hooks_;
};

TEST_F(EngineProfileTest, CountsWritesForTheWindowThenPredicts) {
  MakeSparse("vm.img", 32, {0, 1, 5, 9});
  auto engine = MakeEngine();
  EXPECT_EQ(engine->Predict({{"vm.img"}, 5000}).error().code, errc::kWrongState);
  Result<std::vector<policy::ImageProfile>> result = MakeError(errc::kInternal, "not run");
  std::thread profiler([&] { result = engine->Profile({{"vm.img"}, 1}); });
  std::shared_ptr<ImageHook> hook;
  for (int i = 0; i < 200 && !hook; ++i) {
    hook = hooks_.FindPath(dir_ + "/vm.img");
    if (!hook) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(hook);
  int acked = -1;
  for (int i = 0; i < 7; ++i) hook->AfterWrite(5 * kBlock, nullptr, 8192, Completion(Done, &acked, 0));
  hook->AfterWrite(9 * kBlock + 4096, nullptr, 8192, Completion(Done, &acked, 0));
  EXPECT_EQ(acked, 0);
  profiler.join();
  EXPECT_FALSE(hooks_.FindPath(dir_ + "/vm.img")) << "detached after the window";
  ASSERT_TRUE(result.ok()) << result.error().message;
  ASSERT_EQ(result.value().size(), 1u);
  const policy::ImageProfile& p = result.value()[0];
  EXPECT_EQ(p.name, "vm.img");
  EXPECT_EQ(p.image_bytes, 32 * kBlock);
  EXPECT_EQ(p.block_bytes, kBlock);
  EXPECT_NEAR(p.window_s, 1.0, 0.2);
  ASSERT_EQ(p.writes.size(), 2u);
  EXPECT_EQ(p.writes[0].block, 5u);
  EXPECT_EQ(p.writes[0].count, 7);
  EXPECT_EQ(p.writes[1].block, 9u);
  EXPECT_EQ(p.write_bytes, 8192);
  EXPECT_TRUE(p.data_known);

  auto predicted = engine->Predict({{"vm.img"}, 5000, 0, 5, 25});
  ASSERT_TRUE(predicted.ok()) << predicted.error().message;
  EXPECT_EQ(predicted.value().rows.size(), 5u);
  EXPECT_FALSE(predicted.value().reason.empty());
}

TEST_F(EngineProfileTest, RefusesWhatStartWouldRefuseAndImagesWithAHook) {
  MakeSparse("vm.img", 4, {0});
  MakeSparse("fenced.img", 4, {0});
  auto engine = MakeEngine();
  EXPECT_EQ(engine->Profile({{"nope.img"}, 1}).error().code, errc::kNotFound);
  EXPECT_EQ(engine->Profile({{"../x.img"}, 1}).error().code, errc::kBadName);
  EXPECT_EQ(engine->Profile({{"/etc/passwd"}, 1}).error().code, errc::kBadName);
  ASSERT_EQ(::symlink("vm.img", (dir_ + "/link.img").c_str()), 0);
  EXPECT_EQ(engine->Profile({{"link.img"}, 1}).error().code, errc::kBadName);
  EXPECT_EQ(engine->Profile({{"vm.img"}, 0}).error().code, errc::kInvalidArgument);
  // A fenced copy / a copy being received / a migration source: never replaced.
  struct stat st;
  ASSERT_EQ(::stat((dir_ + "/fenced.img").c_str(), &st), 0);
  auto fence = std::make_shared<RefuseWritesHook>(EROFS);
  hooks_.Attach(st.st_dev, st.st_ino, fence);
  auto refused = engine->Profile({{"vm.img", "fenced.img"}, 1});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, errc::kWrongState);
  EXPECT_NE(refused.error().message.find("before starting its migration"), std::string::npos)
      << refused.error().message;
  EXPECT_EQ(hooks_.Find(st.st_dev, st.st_ino), fence) << "the fence is untouched";
  EXPECT_FALSE(hooks_.FindPath(dir_ + "/vm.img")) << "nothing left attached to the other image";
}

TEST_F(EngineProfileTest, StopProfilesEndsAProfileAtOnce) {
  MakeSparse("vm.img", 4, {0});
  auto engine = MakeEngine();
  Result<std::vector<policy::ImageProfile>> result = MakeError(errc::kInternal, "not run");
  auto t0 = std::chrono::steady_clock::now();
  std::thread profiler([&] { result = engine->Profile({{"vm.img"}, 3600}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  engine->StopProfiles();
  profiler.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, errc::kWrongState);
  EXPECT_FALSE(hooks_.FindPath(dir_ + "/vm.img"));
}

}  // namespace
}  // namespace migratefs::migration
