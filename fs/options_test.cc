#include "fs/options.h"

#include <gtest/gtest.h>

#include <vector>

namespace migratefs::fs {
namespace {

Result<CommandLine> Parse(std::vector<const char*> args) {
  args.insert(args.begin(), "migratefs");
  return ParseCommandLine(static_cast<int>(args.size()), args.data());
}

TEST(Options, Defaults) {
  auto r = Parse({"/src", "/mnt"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  const MountOptions& o = r.value().opts;
  EXPECT_EQ(o.source, "/src");
  EXPECT_EQ(o.mountpoint, "/mnt");
  EXPECT_FALSE(o.foreground);
  EXPECT_TRUE(o.writeback_cache);
  EXPECT_TRUE(o.xattr);
  EXPECT_TRUE(o.write_behind);
  EXPECT_EQ(o.block_size, 512u * 1024);
  EXPECT_EQ(o.max_threads, 32u);
  EXPECT_EQ(o.max_background, 64u);
  EXPECT_EQ(o.state_dir, "/run/migratefs");
  EXPECT_EQ(o.mirror_coalesce_us, 1000u);
  EXPECT_EQ(o.senders, 8u);
  EXPECT_EQ(o.mirror_batch_after, 4u);
  EXPECT_EQ(o.mirror_batch_wait_us, 200u);
}

TEST(Options, AllNamedOptions) {
  auto r = Parse({"-o", "control=/run/c.sock,listen=0.0.0.0:7000,keyfile=/k", "/src", "-f", "/mnt", "-o",
                  "block_size=1M,allow_other,nowriteback,noxattr,nokillpriv_v2,max_threads=8,max_background=128,fsname=imgs,timeout=2.5,"
                  "state_dir=/var/run/mfs,mirror_coalesce_us=0,senders=2,mirror_batch_after=4,mirror_batch_wait_us=50"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  const CommandLine& cl = r.value();
  EXPECT_EQ(cl.opts.control, "/run/c.sock");
  EXPECT_EQ(cl.opts.listen, "0.0.0.0:7000");
  EXPECT_EQ(cl.opts.keyfile, "/k");
  EXPECT_EQ(cl.opts.block_size, 1u << 20);
  EXPECT_EQ(cl.opts.state_dir, "/var/run/mfs");
  EXPECT_EQ(cl.opts.mirror_coalesce_us, 0u);
  EXPECT_EQ(cl.opts.senders, 2u);
  EXPECT_EQ(cl.opts.mirror_batch_after, 4u);
  EXPECT_EQ(cl.opts.mirror_batch_wait_us, 50u);
  EXPECT_TRUE(cl.opts.allow_other);
  EXPECT_FALSE(cl.opts.writeback_cache);
  EXPECT_FALSE(cl.opts.xattr);
  EXPECT_FALSE(cl.killpriv_v2);
  EXPECT_TRUE(Parse({"/src", "/mnt"}).value().killpriv_v2);
  EXPECT_FALSE(Parse({"/src", "/mnt", "-o", "nowrite_behind"}).value().opts.write_behind);
  EXPECT_EQ(cl.opts.max_threads, 8u);
  EXPECT_EQ(cl.opts.max_background, 128u);
  EXPECT_TRUE(cl.opts.foreground);
  EXPECT_EQ(cl.fsname, "imgs");
  EXPECT_DOUBLE_EQ(cl.timeout, 2.5);
}

TEST(Options, BdiSizes) {
  auto d = Parse({"/src", "/mnt"});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value().dirty_max_mb, 1024u);
  EXPECT_EQ(d.value().read_ahead_kb, 1024u);
  auto r = Parse({"-o", "dirty_max_mb=0,read_ahead_kb=0", "/src", "/mnt"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().dirty_max_mb, 0u);
  auto bad = Parse({"-o", "dirty_max_mb=lots", "/src", "/mnt"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("dirty_max_mb"), std::string::npos) << bad.error().message;
}

TEST(Options, ConcatenatedDashO) {
  auto r = Parse({"/src", "/mnt", "-oinsecure,listen=:1"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r.value().opts.insecure);
}

TEST(Options, FstabGenericOptions) {
  auto r = Parse({"/src", "/mnt", "-o", "rw,nofail,noauto,_netdev,defaults,dev,suid,exec,x-systemd.automount,relatime"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  // Kernel flags are passed on, fstab-only ones are dropped.
  EXPECT_EQ(r.value().mount_flags, (std::vector<std::string>{"rw", "dev", "suid", "exec"}));
}

TEST(Options, DebugImpliesForeground) {
  auto r = Parse({"-d", "/src", "/mnt"});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.value().opts.foreground);
}

TEST(Options, Rejects) {
  for (std::vector<const char*> bad : std::vector<std::vector<const char*>>{
           {"/src", "/mnt", "-o", "bogus"},
           {"/src", "/mnt", "-o", "block_size=3000"},
           {"/src", "/mnt", "-o", "block_size=2048"},
           {"/src", "/mnt", "-o", "block_size=128M"},
           {"/src", "/mnt", "-o", "block_size=abc"},
           {"/src", "/mnt", "-o", "max_threads=0"},
           {"/src", "/mnt", "-o", "mirror_coalesce_us=100001"},
           {"/src", "/mnt", "-o", "mirror_coalesce_us=-1"},
           {"/src", "/mnt", "-o", "mirror_batch_after=1025"},
           {"/src", "/mnt", "-o", "mirror_batch_wait_us=0"},
           {"/src", "/mnt", "-o", "senders=0"},
           {"/src", "/mnt", "-o", "senders=65"},
           {"/src", "/mnt", "-o", "control"},
           {"/src", "/mnt", "-o", "state_dir"},
           {"/src", "/mnt", "-o", "state_dir=run/mfs"},  // relative: the daemon leaves its cwd
           {"/src", "/mnt", "-o", "allow_other=1"},
           {"/src", "/mnt", "-o", "listen=:7000"},
           {"/src", "/mnt", "-o"},
           {"/src", "/mnt", "-x"},
           {"/src"},
           {"/src", "/mnt", "/extra"},
       }) {
    auto r = Parse(bad);
    EXPECT_FALSE(r.ok()) << bad.back();
    if (!r.ok()) {
      EXPECT_FALSE(r.error().message.empty());
    }
  }
}

TEST(Options, PriorityMarking) {
  auto unset = Parse({"/src", "/mnt"});
  ASSERT_TRUE(unset.ok());
  EXPECT_FALSE(unset.value().opts.dscp.has_value());
  EXPECT_FALSE(unset.value().opts.so_priority.has_value());

  auto named = Parse({"/src", "/mnt", "-o", "dscp=AF41,so_priority=6"});
  ASSERT_TRUE(named.ok()) << named.error().message;
  EXPECT_EQ(named.value().opts.dscp, uint8_t(34));
  EXPECT_EQ(named.value().opts.so_priority, uint32_t(6));

  auto numbers = Parse({"/src", "/mnt", "-o", "dscp=46,so_priority=0x10010"});
  ASSERT_TRUE(numbers.ok()) << numbers.error().message;
  EXPECT_EQ(numbers.value().opts.dscp, uint8_t(46));
  EXPECT_EQ(numbers.value().opts.so_priority, uint32_t(0x10010));

  for (const char* bad : {"dscp=AF44", "dscp=64", "dscp", "dscp=", "so_priority=-1", "so_priority=4294967296",
                          "so_priority=high"}) {
    auto r = Parse({"/src", "/mnt", "-o", bad});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, errc::kInvalidArgument) << bad;
    const std::string name = std::string(bad).substr(0, std::string(bad).find('='));
    EXPECT_NE(r.error().message.find("'" + name + "'"), std::string::npos) << r.error().message;
  }
}

TEST(Options, ListenNeedsKeyOrInsecure) {
  auto r = Parse({"/src", "/mnt", "-o", "listen=:7000"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("keyfile"), std::string::npos);
  EXPECT_TRUE(Parse({"/src", "/mnt", "-o", "listen=:7000,keyfile=/k"}).ok());
  EXPECT_TRUE(Parse({"/src", "/mnt", "-o", "listen=:7000,insecure"}).ok());
}

TEST(Options, UnknownOptionIsNamed) {
  auto r = Parse({"/src", "/mnt", "-o", "rw,frobnicate=3"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("frobnicate"), std::string::npos);
}

TEST(Options, HelpAndVersionNeedNoPaths) {
  EXPECT_TRUE(Parse({"--help"}).value().help);
  EXPECT_TRUE(Parse({"-V"}).value().version);
}

}  // namespace
}  // namespace migratefs::fs
