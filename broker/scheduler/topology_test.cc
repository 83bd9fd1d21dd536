#include "broker/scheduler/topology.h"

#include <gtest/gtest.h>

#include "broker/daemon/test_util.h"
#include "broker/scheduler/document.h"

namespace migratefs::scheduler {
namespace {

using nlohmann::json;
using Sections = std::vector<std::string>;

const char* kTree = R"(
[[switch]]
name = "core"
[[switch]]
name = "s1"
parent = "core"
[[switch]]
name = "s2"
parent = "core"
[[switch]]
name = "s3"
parent = "s2"
[[host]]
name = "a"
switch = "s1"
broker = "10.78.0.1:7100"
migratefs = "10.78.0.1:7200"
[[host]]
name = "b"
switch = "s1"
broker = "10.78.0.2:7100"
migratefs = "10.78.0.2:7200"
[[host]]
name = "c"
switch = "s3"
broker = "10.78.0.3:7100"
migratefs = "10.78.0.3:7200"
)";

Topology Tree() {
  broker::testing::ScratchDir dir;
  auto t = Topology::Load(dir.Write("topo.toml", kTree));
  EXPECT_TRUE(t) << t.error().message;
  return t.value();
}

TEST(Topology, PathsGoUpToTheLowestCommonSwitchAndDown) {
  Topology t = Tree();
  EXPECT_EQ(t.Path("a", "b").value(), (Sections{"a-s1", "b-s1"}));
  EXPECT_EQ(t.Path("a", "c").value(), (Sections{"a-s1", "s1-core", "s2-core", "s3-s2", "c-s3"}));
  EXPECT_EQ(t.Path("c", "a").value(), (Sections{"c-s3", "s3-s2", "s2-core", "s1-core", "a-s1"}));
  EXPECT_TRUE(t.Path("a", "a").value().empty());
  EXPECT_FALSE(t.Path("a", "zz"));
  EXPECT_EQ(t.FindHost("c")->broker, "10.78.0.3:7100");
}

TEST(Topology, JsonWorksToo) {
  broker::testing::ScratchDir dir;
  json doc = {{"switch", {{{"name", "sw"}}}},
              {"host", {{{"name", "a"}, {"switch", "sw"}, {"broker", "h:1"}, {"migratefs", "h:2"}},
                        {{"name", "b"}, {"switch", "sw"}, {"broker", "i:1"}, {"migratefs", "i:2"}}}}};
  auto t = Topology::Load(dir.Write("t.json", doc.dump()));
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t.value().Path("a", "b").value(), (Sections{"a-sw", "b-sw"}));
}

struct Broken {
  const char* toml;
  const char* names;
};

class BrokenTopology : public ::testing::TestWithParam<Broken> {};

TEST_P(BrokenTopology, ErrorNamesTheEntryAndField) {
  broker::testing::ScratchDir dir;
  auto t = Topology::Load(dir.Write("topo.toml", GetParam().toml));
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find(GetParam().names), std::string::npos) << t.error().message;
  EXPECT_NE(t.error().message.find("topo.toml"), std::string::npos) << t.error().message;
}

#define SW "[[switch]]\nname='core'\n"
#define HOST(n) "[[host]]\nname='" n "'\nswitch='core'\nbroker='h:1'\nmigratefs='h:2'\n"
INSTANTIATE_TEST_SUITE_P(
    All, BrokenTopology,
    ::testing::Values(
        Broken{SW, "\"host\""},
        Broken{HOST("a"), "which is no [[switch]]"},
        Broken{SW "[[switch]]\nname='x'\n" HOST("a"), "exactly one root"},
        Broken{SW "[[host]]\nname='a'\nswitch='core'\nmigratefs='h:2'\n", "host[0]: field \"broker\""},
        Broken{SW "[[host]]\nname='a'\nswitch='core'\nbroker='nope'\nmigratefs='h:2'\n", "host[0]: field \"broker\""},
        Broken{SW "[[host]]\nname='a'\nswitch='s9'\nbroker='h:1'\nmigratefs='h:2'\n", "host[0]: field \"switch\""},
        Broken{SW HOST("a") HOST("a"), "host[1]: name \"a\" is used twice"},
        Broken{SW "[[switch]]\nname='x'\nparent='y'\n[[switch]]\nname='y'\nparent='x'\n" HOST("a"), "cycle"},
        Broken{SW "[[switch]]\nname='x'\nparent='nowhere'\n" HOST("a"), "\"nowhere\""},
        Broken{SW "[[switch]]\nnme='x'\n" HOST("a"), "switch[1]: field \"name\""},
        Broken{SW HOST("a") "extra = 1\n", "host[0]: field \"extra\""},
        Broken{SW HOST("a") "[[rack]]\nname='r'\n", "\"rack\" is not a known field"},
        Broken{"[[switch]\n", "topo.toml:1"}));
#undef SW
#undef HOST

}  // namespace
}  // namespace migratefs::scheduler
