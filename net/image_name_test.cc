#include "net/image_name.h"

#include <gtest/gtest.h>

#include "migratefs/wire.h"

namespace migratefs::net {
namespace {

TEST(ImageNameTest, AcceptsRelativeNames) {
  for (const char* n : {"vm1.img", "a/b/c.qcow2", "..x", "x..", ".hidden", "a/.b", "with space"}) {
    EXPECT_TRUE(ValidateImageName(n).ok()) << n;
  }
}

TEST(ImageNameTest, RefusesEscapesAndOddities) {
  const std::string nul("a\0b", 3);
  for (std::string n : {std::string(""), std::string("/etc/passwd"), std::string(".."), std::string("../x"),
                        std::string("a/../../x"), std::string("a/.."), std::string("."), std::string("./a"),
                        std::string("a/./b"), std::string("a//b"), std::string("a/"), std::string("/"), nul}) {
    Status s = ValidateImageName(n);
    ASSERT_FALSE(s.ok()) << n;
    EXPECT_EQ(s.error().code, errc::kBadName) << n;
    EXPECT_FALSE(s.error().message.empty());
  }
}

TEST(ImageNameTest, Limits) {
  EXPECT_TRUE(ValidateImageName(std::string(255, 'a')).ok());
  EXPECT_FALSE(ValidateImageName(std::string(256, 'a')).ok());
  std::string deep;
  for (size_t i = 0; i < wire::kMaxNameComponents; ++i) deep += (i ? "/d" : "d");
  EXPECT_TRUE(ValidateImageName(deep).ok());
  EXPECT_FALSE(ValidateImageName(deep + "/d").ok());
  std::string longname;
  while (longname.size() <= wire::kMaxNameLength) longname += std::string(200, 'x') + "/";
  longname += "x";
  Status s = ValidateImageName(longname);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("longer than"), std::string::npos);
}

TEST(ImageNameTest, Split) {
  std::string p, b;
  SplitImageName("vm.img", &p, &b);
  EXPECT_EQ(p, ".");
  EXPECT_EQ(b, "vm.img");
  SplitImageName("a/b/vm.img", &p, &b);
  EXPECT_EQ(p, "a/b");
  EXPECT_EQ(b, "vm.img");
}

}  // namespace
}  // namespace migratefs::net
