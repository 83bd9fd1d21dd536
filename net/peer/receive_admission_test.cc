#include "net/peer/receive_admission.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "net/image_identity.h"
#include "net/peer/peer_test_util.h"

namespace migratefs::net {
namespace {

using testing::TempDir;

class ReceiveAdmissionTest : public ::testing::Test {
 protected:
  void SetUp() override { dirfd_ = ::open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY); }
  void TearDown() override { ::close(dirfd_); }

  // An existing file, as the target finds it: opened by OpenReceiveFile (read-only).
  ReceiveFile Existing(const std::string& name, const std::string& identity = "") {
    const int fd = ::open((dir_ / name).c_str(), O_CREAT | O_RDWR, 0600);
    EXPECT_GE(fd, 0);
    if (!identity.empty()) {
      EXPECT_EQ(WriteImageIdentity(fd, identity), 0);
    }
    ::close(fd);
    auto f = OpenReceiveFile(dirfd_, name);
    EXPECT_TRUE(f.ok());
    EXPECT_FALSE(f.value().created);
    return f.value();
  }

  TempDir dir_;
  int dirfd_ = -1;
};

TEST_F(ReceiveAdmissionTest, NewFileIsAlwaysAdmitted) {
  auto f = OpenReceiveFile(dirfd_, "new.img");
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(AdmitReceiveFile(f.value(), "new.img", {}).ok());
  CloseReceiveFile(f.value(), true);
}

TEST_F(ReceiveAdmissionTest, ExistingFileOnlyIfSameIdentityOrOverwrite) {
  ReceiveFile f = Existing("vm1.img", "aaaa");
  EXPECT_TRUE(AdmitReceiveFile(f, "vm1.img", {"aaaa", false}).ok());
  Status other = AdmitReceiveFile(f, "vm1.img", {"bbbb", false});
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, errc::kTargetExists);
  EXPECT_NE(other.error().message.find("overwrite"), std::string::npos) << other.error().message;
  EXPECT_TRUE(AdmitReceiveFile(f, "vm1.img", {"bbbb", true}).ok());
  CloseReceiveFile(f, true);
  EXPECT_TRUE(testing::Exists(dir_ / "vm1.img"));  // not created by that open: kept

  // A local file with no identity is nobody's copy: an unknown identity never matches.
  ReceiveFile plain = Existing("local.img");
  EXPECT_EQ(AdmitReceiveFile(plain, "local.img", {"", false}).error().code, errc::kTargetExists);
  EXPECT_EQ(AdmitReceiveFile(plain, "local.img", {"cccc", false}).error().code, errc::kTargetExists);
  CloseReceiveFile(plain, false);
}

TEST_F(ReceiveAdmissionTest, HardLinkIsRefusedEvenWithOverwrite) {
  ReceiveFile f = Existing("hl.img", "aaaa");
  ::close(f.fd);
  CloseReceiveFile(f, false);
  ASSERT_EQ(::link((dir_ / "hl.img").c_str(), (dir_ / "outside").c_str()), 0);
  auto again = OpenReceiveFile(dirfd_, "hl.img");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value().nlink, 2u);
  Status st = AdmitReceiveFile(again.value(), "hl.img", {"aaaa", true});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, errc::kBadName);
  CloseReceiveFile(again.value(), false);
}

TEST_F(ReceiveAdmissionTest, FileOpenForWritingElsewhereIsBusy) {
  ReceiveFile f = Existing("busy.img", "aaaa");
  EXPECT_FALSE(OpenForWritingElsewhere(f.fd));
  const int writer = ::open((dir_ / "busy.img").c_str(), O_WRONLY);
  ASSERT_GE(writer, 0);
  EXPECT_TRUE(OpenForWritingElsewhere(f.fd));
  Status st = AdmitReceiveFile(f, "busy.img", {"aaaa", true});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, errc::kTargetBusy);
  ::close(writer);
  EXPECT_TRUE(AdmitReceiveFile(f, "busy.img", {"aaaa", false}).ok());
  // A reader does not count.
  const int reader = ::open((dir_ / "busy.img").c_str(), O_RDONLY);
  EXPECT_FALSE(OpenForWritingElsewhere(f.fd));
  ::close(reader);
  CloseReceiveFile(f, false);
}

TEST(ImageIdentity, EnsureStampsOnceAndKeepsIt) {
  TempDir dir;
  const int fd = ::open((dir / "i.img").c_str(), O_CREAT | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(ReadImageIdentity(fd), "");
  auto id = EnsureImageIdentity(fd);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id.value().size(), 32u);
  EXPECT_EQ(ReadImageIdentity(fd), id.value());
  EXPECT_EQ(EnsureImageIdentity(fd).value(), id.value());
  const int other = ::open((dir / "j.img").c_str(), O_CREAT | O_RDWR, 0600);
  EXPECT_NE(EnsureImageIdentity(other).value(), id.value());
  ::close(other);
  ::close(fd);
}

}  // namespace
}  // namespace migratefs::net
