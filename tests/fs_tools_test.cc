// Real VM-image tools through the mount: fio with verification, qemu-img, qemu-io
// (including cache=none, i.e. O_DIRECT).
#include <gtest/gtest.h>

#include <string>

#include "tests/fs_test_util.h"

namespace migratefs::fs::testing {
namespace {

class FsTools : public ::testing::Test {
 protected:
  Cmd Sh(const std::string& cmd) {
    Cmd c = Shell(cmd, 120);
    EXPECT_EQ(c.status, 0) << cmd << "\n" << c.out;
    return c;
  }
  InProcessMount m_;
};

TEST_F(FsTools, FioVerifyDirectAndBuffered) {
  std::string f = Q(m_.mnt() + "/fio.img");
  std::string common = "fio --output-format=terse --verify=crc32c --verify_fatal=1 --do_verify=1 --size=48M --filename=" + f;
  // Random 4 KiB, libaio qd16, O_DIRECT (qemu cache=none's pattern).
  Sh(common + " --name=rand-direct --rw=randwrite --bs=4k --ioengine=libaio --iodepth=16 --direct=1");
  // Sequential 1 MiB O_DIRECT.
  Sh(common + " --name=seq-direct --rw=write --bs=1m --ioengine=libaio --iodepth=8 --direct=1");
  // Buffered, odd block sizes at unaligned offsets, several jobs on one file.
  Sh(common + " --name=buffered --rw=randwrite --bsrange=1k-132k --bs_unaligned=1 --ioengine=psync --numjobs=1");
  Sh(common + " --name=buffered-aio --rw=randrw --bs=64k --ioengine=libaio --iodepth=8 --direct=0");
}

TEST_F(FsTools, QemuImgAndQemuIo) {
  std::string mnt = m_.mnt(), src = m_.src();
  std::string qcow = Q(mnt + "/vm.qcow2"), raw = Q(mnt + "/vm.raw");
  Sh("qemu-img create -q -f qcow2 " + qcow + " 64M");
  // cache=none (O_DIRECT), native AIO.
  Cmd w = Sh("qemu-io -f qcow2 -t none -c 'write -P 0xab 0 1M' -c 'write -P 0xcd 3M 512' -c 'write -P 0xef 5000 3000' " +
             qcow);
  EXPECT_EQ(w.out.find("failed"), std::string::npos) << w.out;
  // -n: no host cache (O_DIRECT) again, reading back with pattern checks.
  Cmd r = Sh("qemu-io -f qcow2 -n -c 'read -P 0xab 0 4096' -c 'read -P 0xcd 3M 512' -c 'read -P 0xef 5000 3000' "
             "-c 'read -P 0 8M 1M' " + qcow);
  EXPECT_EQ(r.out.find("Pattern verification failed"), std::string::npos) << r.out;
  // Buffered (cache=writeback) access sees the same bytes.
  Cmd rb = Sh("qemu-io -f qcow2 -t writeback -c 'read -P 0xab 8192 4096' -c 'read -P 0xef 5000 3000' " + qcow);
  EXPECT_EQ(rb.out.find("Pattern verification failed"), std::string::npos) << rb.out;
  Cmd check = Sh("qemu-img check " + qcow);
  EXPECT_NE(check.out.find("No errors were found"), std::string::npos) << check.out;
  Sh("qemu-img convert -t none -T none -f qcow2 -O raw " + qcow + " " + raw);
  Cmd cmp = Sh("qemu-img compare -f qcow2 -F raw " + qcow + " " + raw);
  EXPECT_NE(cmp.out.find("Images are identical"), std::string::npos) << cmp.out;
  // What landed in SRC is the same image, and still sparse.
  Sh("qemu-img compare -f raw -F raw " + Q(src + "/vm.raw") + " " + raw);
  Cmd du = Sh("du -k " + Q(src + "/vm.raw") + " | cut -f1");
  EXPECT_LT(std::stoi(du.out), 16 * 1024) << "64 MiB raw image lost its holes";
  Cmd rr = Sh("qemu-io -f raw -n -c 'read -P 0xcd 3M 512' -c 'read -P 0 32M 4096' " + raw);
  EXPECT_EQ(rr.out.find("Pattern verification failed"), std::string::npos) << rr.out;
}

}  // namespace
}  // namespace migratefs::fs::testing
