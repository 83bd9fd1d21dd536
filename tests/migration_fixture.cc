#include "tests/migration_fixture.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace migratefs::testing {

int FreeTcpPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

pid_t StartFio(const std::string& file, uint64_t size_mib, int runtime_s, const std::string& rate,
               const std::string& log) {
  return Spawn({"fio", "--name=vm", "--filename=" + file, "--size=" + std::to_string(size_mib) + "M",
                "--rw=randwrite", "--bsrange=4k-256k", "--direct=1", "--ioengine=libaio", "--iodepth=8",
                "--time_based=1", "--runtime=" + std::to_string(runtime_s), "--rate=" + rate,
                "--verify=crc32c", "--verify_backlog=64", "--verify_fatal=1", "--randrepeat=0",
                "--verify_state_save=0"},
               "", log);
}

void MigrationTest::SetUp() {
  if (!RunningAsRoot() || access("/dev/fuse", R_OK | W_OK) != 0) GTEST_SKIP() << "needs root and /dev/fuse";
  tmp_ = std::make_unique<TempDir>("mig");
  key_ = *tmp_ / "peer.key";
  WriteKeyFile(key_);
  target_addr_ = "127.0.0.1:" + std::to_string(FreeTcpPort());
  a_cfg_.name = "source";
  a_cfg_.keyfile = key_;
  b_cfg_.name = "target";
  b_cfg_.keyfile = key_;
  b_cfg_.listen = target_addr_;
}

void MigrationTest::TearDown() {
  a_.reset();
  b_.reset();
  tmp_.reset();
}

void MigrationTest::StartDaemons(const std::string& extra_opts) {
  a_cfg_.extra_opts = extra_opts;
  b_cfg_.extra_opts = extra_opts;
  a_ = std::make_unique<Daemon>(*tmp_ / "a", a_cfg_);
  b_ = std::make_unique<Daemon>(*tmp_ / "b", b_cfg_);
  ASSERT_TRUE(b_->Start());
  ASSERT_TRUE(a_->Start());
}

void MigrationTest::RestartTarget() {
  b_->Stop();
  ASSERT_TRUE(b_->Start());
}

void MigrationTest::RestartSource() {
  a_->Stop();
  ASSERT_TRUE(a_->Start());
}

std::string MigrationTest::StartMigration(const std::vector<std::string>& images, uint64_t network_kbps) {
  nlohmann::json req = {{"op", "start"}, {"images", images}, {"target", target_addr_}};
  if (network_kbps) req["network_kbps"] = network_kbps;
  auto r = a_->Request(req);
  EXPECT_TRUE(r.value("ok", false)) << r.dump();
  return r.value("id", "");
}

nlohmann::json MigrationTest::Progress(const std::string& id) {
  return a_->Request({{"op", "query_progress"}, {"id", id}, {"what", "network"}});
}

void MigrationTest::FinishAndCompare(const std::string& id, const std::vector<std::string>& images) {
  // The hypervisor's last sync: nothing writes any more; flush what the kernel holds.
  ::sync();
  ASSERT_TRUE(WaitForCompletion(*a_, id, std::chrono::seconds(120)));
  auto fin = a_->Request({{"op", "finish"}, {"id", id}});
  ASSERT_TRUE(fin.value("ok", false)) << fin.dump();
  for (const auto& img : images) EXPECT_TRUE(FilesEqual(a_->Src(img), b_->Src(img))) << img;
}

}  // namespace migratefs::testing
