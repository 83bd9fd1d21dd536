#include "net/migration/start_guards.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <vector>

namespace migratefs::migration {
namespace {

TEST(IsOwnAddress, SamePortOnThisHost) {
  EXPECT_TRUE(IsOwnAddress("127.0.0.1:7400", "127.0.0.1:7400"));
  EXPECT_TRUE(IsOwnAddress("localhost:7400", "0.0.0.0:7400"));
  EXPECT_TRUE(IsOwnAddress("127.0.0.2:7400", ":7400"));     // all of 127/8 is this host
  EXPECT_TRUE(IsOwnAddress("[::1]:7400", "[::]:7400"));
  EXPECT_TRUE(IsOwnAddress("0.0.0.0:7400", ":7400"));
  EXPECT_TRUE(IsOwnAddress("10.1.2.3:7400", "10.1.2.3:7400"));
}

TEST(IsOwnAddress, OtherPortOrHostOrNoListener) {
  EXPECT_FALSE(IsOwnAddress("127.0.0.1:7401", "127.0.0.1:7400"));
  EXPECT_FALSE(IsOwnAddress("192.0.2.7:7400", "0.0.0.0:7400"));  // TEST-NET: no interface has it
  EXPECT_FALSE(IsOwnAddress("192.0.2.7:7400", "10.1.2.3:7400"));
  EXPECT_FALSE(IsOwnAddress("127.0.0.1:7400", ""));
  EXPECT_FALSE(IsOwnAddress("garbage", "127.0.0.1:7400"));
}

TEST(CheckDescriptorRoom, RefusesNearTheLimitAndRecovers) {
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = 256;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  EXPECT_TRUE(CheckDescriptorRoom().ok());
  std::vector<int> fds;
  for (int i = 0; i < 256; i++) {
    int fd = dup(0);
    if (fd < 0) break;
    fds.push_back(fd);
    if (!CheckDescriptorRoom().ok()) break;
  }
  Status st = CheckDescriptorRoom();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, errc::kResourceExhausted);
  EXPECT_LE(fds.size(), 256u - 64u + 1);  // refused while 64 were still free
  for (int fd : fds) close(fd);
  EXPECT_TRUE(CheckDescriptorRoom().ok());
  EXPECT_EQ(RaiseDescriptorLimit(), saved.rlim_max);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

}  // namespace
}  // namespace migratefs::migration
