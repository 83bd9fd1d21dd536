#include "net/peer/postcopy_map.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "net/peer/postcopy_image.h"

namespace migratefs::net {
namespace {

using namespace std::chrono_literals;
constexpr uint32_t kBs = 4096;
const std::string kId(32, 'c');

class PostcopyMapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mfsmap.XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    state_ = dir_ + "/state/nested";  // created on demand
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // 10 blocks, of which 1, 4 and 9 are remote.
  std::unique_ptr<PostcopyMap> Make(const std::string& id = kId) {
    auto made = PostcopyMap::Create(state_, 7, 42, id, 10 * kBs - 100, kBs, 90s, std::string{char(0x12), char(0x02)});
    EXPECT_TRUE(made.ok()) << made.error().message;
    return made.ok() ? std::move(made.value()) : nullptr;
  }
  std::string dir_, state_;
};

TEST_F(PostcopyMapTest, KeepsTheRemoteBlocksAndEveryMarkAcrossAReopen) {
  auto map = Make();
  ASSERT_TRUE(map);
  EXPECT_EQ(map->blocks(), 10u);
  EXPECT_TRUE(map->remote(1) && map->remote(4) && map->remote(9));
  EXPECT_FALSE(map->remote(0) || map->remote(2) || map->remote(8) || map->remote(10));
  map->MarkLocal(4);
  map.reset();  // as a dead daemon leaves it: nothing flushed, nothing closed on purpose
  auto again = PostcopyMap::Open(state_, 7, 42, kId);
  ASSERT_TRUE(again.ok()) << again.error().message;
  const PostcopyMap& m = *again.value();
  EXPECT_EQ(m.size(), 10 * kBs - 100);
  EXPECT_EQ(m.block_size(), kBs);
  EXPECT_EQ(m.timeout(), 90s);
  EXPECT_EQ(m.RemoteBitmap(), (std::string{char(0x02), char(0x02)}));
}

TEST_F(PostcopyMapTest, RefusesAMissingDamagedOrForeignMap) {
  auto none = PostcopyMap::Open(state_, 7, 42, kId);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, errc::kNotFound);
  ASSERT_TRUE(Make());
  auto foreign = PostcopyMap::Open(state_, 7, 42, std::string(32, 'd'));
  ASSERT_FALSE(foreign.ok());
  EXPECT_EQ(foreign.error().code, errc::kInvalidArgument);
  EXPECT_FALSE(PostcopyMap::Open(state_, 7, 43, kId).ok()) << "another inode's name";
  const std::string path = PostcopyMap::PathFor(state_, 7, 42);
  ASSERT_EQ(::truncate(path.c_str(), std::filesystem::file_size(path) - 1), 0);
  auto cut = PostcopyMap::Open(state_, 7, 42, kId);
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.error().message.find("damaged"), std::string::npos) << cut.error().message;
}

// A create that fails must not leave the previous postcopy's map behind for the mark
// that follows: a restarted daemon would trust it.
TEST_F(PostcopyMapTest, AFailedCreateRemovesTheOldMap) {
  ASSERT_TRUE(Make());
  const std::string path = PostcopyMap::PathFor(state_, 7, 42);
  ASSERT_TRUE(std::filesystem::exists(path));
  // The temporary name is taken by a directory: the create fails after the unlink.
  std::filesystem::create_directory(path + ".tmp");
  auto made = PostcopyMap::Create(state_, 7, 42, kId, 10 * kBs, kBs, 1s, "");
  EXPECT_FALSE(made.ok());
  EXPECT_FALSE(std::filesystem::exists(path));
}

// PostcopyImage's side of the contract: a block is marked local in the map when the
// source's bytes are written (EndArrival) and when a change claims it, before the change
// returns to the FUSE layer to be applied; a failed arrival leaves it remote.
TEST_F(PostcopyMapTest, ImageMarksArrivalsAndClaimsBeforeTheyAreVisible) {
  auto map = Make();
  ASSERT_TRUE(map);
  const PostcopyMap* m = map.get();
  auto image = PostcopyImage::Restore("a.img", std::move(map));
  EXPECT_EQ(image->RemoteRuns(), (std::vector<std::pair<uint64_t, uint64_t>>{{1, 1}, {4, 1}, {9, 1}}));
  ASSERT_TRUE(image->BeginArrival(1));
  EXPECT_TRUE(m->remote(1)) << "marked before its bytes were written";
  image->EndArrival(1, false);
  EXPECT_TRUE(m->remote(1)) << "a failed write marked the block local";
  ASSERT_TRUE(image->BeginArrival(1));
  image->EndArrival(1, true);
  EXPECT_FALSE(m->remote(1));
  EXPECT_EQ(image->BeforeChange(4 * kBs, kBs), 0);  // covers block 4 whole: claimed
  EXPECT_FALSE(m->remote(4));
  EXPECT_EQ(image->BeforeChange(9 * kBs, 0), 0);  // a truncate to block 9's start cuts it off
  EXPECT_FALSE(m->remote(9));
  EXPECT_TRUE(image->AllLocal());
  const std::string path = m->path();
  EXPECT_TRUE(std::filesystem::exists(path));
  image->DiscardMap();
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace migratefs::net
