// `profile` and `predict` on a real daemon (issue 10 item 6): the daemon counts the
// writes a writer makes through the mount, block by block, for the window asked; the
// answer is the profile file `migratefs-scheduler predict` reads; predict then returns
// the table and a recommendation. A migrating image is refused.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <future>
#include <thread>

#include "tests/migration_fixture.h"

namespace migratefs::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kBlock = 512 * 1024;  // the daemon's default block_size

class MigrationProfileTest : public MigrationTest {};

// `n` O_DIRECT writes of 4 KiB into block `block` of `path` (through the mount).
bool WriteBlock(const std::string& path, uint64_t block, int n) {
  int fd = open(path.c_str(), O_WRONLY | O_DIRECT);
  if (fd < 0) return false;
  void* mem = nullptr;
  if (posix_memalign(&mem, 4096, 4096) != 0) return false;
  std::memset(mem, 'p', 4096);
  bool ok = true;
  for (int i = 0; i < n && ok; ++i) ok = pwrite(fd, mem, 4096, off_t(block * kBlock + 4096 * (i % 8))) == 4096;
  free(mem);
  close(fd);
  return ok;
}

TEST_F(MigrationProfileTest, CountsTheWritesOfTheWindowThenPredicts) {
  StartDaemons();
  // 16 MiB, data in the first 8 MiB (blocks 0..15), a hole after.
  WritePatternFile(a_->Src("vm.img"), 8 * kMiB, 41);
  ASSERT_EQ(truncate(a_->Src("vm.img").c_str(), off_t(16 * kMiB)), 0);

  json early = a_->Request({{"op", "predict"}, {"images", {"vm.img"}}, {"net_kbps", 10000}});
  EXPECT_EQ(early["error"]["code"], "wrong_state") << early.dump();

  auto profiled = std::async(std::launch::async, [&] {
    return a_->Request({{"op", "profile"}, {"images", {"vm.img"}}, {"seconds", 2}, {"req", "p"}});
  });
  std::this_thread::sleep_for(500ms);  // the hook is attached well before this
  // A second profile of the same image meanwhile is refused; other requests go on.
  json twice = a_->Request({{"op", "profile"}, {"images", {"vm.img"}}, {"seconds", 1}});
  EXPECT_EQ(twice["error"]["code"], "busy") << twice.dump();
  EXPECT_EQ(a_->Request({{"op", "list"}})["ok"], true);
  ASSERT_TRUE(WriteBlock(a_->Mnt("vm.img"), 3, 5));
  ASSERT_TRUE(WriteBlock(a_->Mnt("vm.img"), 10, 2));
  ASSERT_TRUE(WriteBlock(a_->Mnt("vm.img"), 20, 1));  // into the hole: holds data afterwards
  ASSERT_EQ(profiled.wait_for(10s), std::future_status::ready);
  json answer = profiled.get();
  ASSERT_EQ(answer.value("ok", false), true) << answer.dump();
  EXPECT_EQ(answer["req"], "p");
  ASSERT_EQ(answer["profile"]["images"].size(), 1u);
  const json& p = answer["profile"]["images"][0];
  EXPECT_EQ(p["name"], "vm.img");
  EXPECT_EQ(p["image_bytes"], 16 * kMiB);
  EXPECT_EQ(p["block_bytes"], kBlock);
  EXPECT_NEAR(p["window_s"].get<double>(), 2.0, 0.5);
  EXPECT_EQ(p["writes"], json::parse("[[3,5.0],[10,2.0],[20,1.0]]")) << p.dump();
  EXPECT_EQ(p["write_bytes"], 4096.0);
  // Data blocks: 0..15 and 20 (file systems may round an extent up, never down).
  std::vector<bool> data(32, false);
  for (const json& r : p["data"])
    for (uint64_t b = r[0]; b < r[0].get<uint64_t>() + r[1].get<uint64_t>(); ++b) data.at(b) = true;
  for (uint64_t b = 0; b < 16; ++b) EXPECT_TRUE(data[b]) << b;
  EXPECT_TRUE(data[20]);
  EXPECT_FALSE(data[28]) << p["data"].dump();

  json predicted = a_->Request(
      {{"op", "predict"}, {"images", {"vm.img"}}, {"net_kbps", 10000}, {"deadline_s", 60}, {"rtt_ms", 1}});
  ASSERT_EQ(predicted.value("ok", false), true) << predicted.dump();
  ASSERT_EQ(predicted["rows"].size(), 21u);
  EXPECT_EQ(predicted["rows"][0]["s"], 0.0);
  EXPECT_EQ(predicted["rows"][20]["s"], 100.0);
  for (const char* key : {"t_s", "u_s", "fetches", "fetch_stall_s", "stall_s", "converges", "meets_deadline", "cost"})
    EXPECT_TRUE(predicted["rows"][5].contains(key)) << key;
  EXPECT_TRUE(predicted["precopy"]["converges"].get<bool>()) << predicted["precopy"].dump();  // 8 writes in 2 s
  EXPECT_EQ(predicted["recommended_s"], 100.0) << predicted["reason"];  // pre-copy converges in time
  EXPECT_FALSE(predicted["reason"].get<std::string>().empty());
  // ~9 MiB of data at 10 MB/s.
  EXPECT_NEAR(predicted["precopy"]["t_s"].get<double>(), 17.0 * kBlock / 1e7, 0.5);

  // Once the image migrates it is the migration's: refused, saying to profile before.
  std::string id = StartMigration({"vm.img"});
  ASSERT_TRUE(WaitForCompletion(*a_, id, 30s));
  json busy = a_->Request({{"op", "profile"}, {"images", {"vm.img"}}, {"seconds", 1}});
  EXPECT_EQ(busy["error"]["code"], "wrong_state") << busy.dump();
  EXPECT_NE(busy["error"]["message"].get<std::string>().find("before starting its migration"), std::string::npos);
  EXPECT_EQ(a_->Request({{"op", "profile"}, {"images", {"nope.img"}}, {"seconds", 1}})["error"]["code"], "not_found");
  EXPECT_EQ(a_->Request({{"op", "profile"}, {"images", {"../vm.img"}}, {"seconds", 1}})["error"]["code"], "bad_name");
  FinishAndCompare(id, {"vm.img"});
}

}  // namespace
}  // namespace migratefs::testing
