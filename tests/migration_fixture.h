// Shared fixture of the end-to-end migration tests: a key, two daemons (source and
// target) on loopback, and helpers to start, drive and finish a migration and check the
// result byte for byte.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tests/harness/harness.h"

namespace migratefs::testing {

int FreeTcpPort();

// fio random writes of mixed sizes (4k-256k), O_DIRECT, verifying what it wrote as
// it goes (--verify_fatal: a bad block fails fio). Returns its pid.
pid_t StartFio(const std::string& file, uint64_t size_mib, int runtime_s, const std::string& rate = "20m",
               const std::string& log = "");

class MigrationTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Source "a" and target "b", both with the shared key. `b_listen` defaults to
  // 127.0.0.1:<free port>.
  void StartDaemons(const std::string& extra_opts = "");
  void RestartTarget();
  void RestartSource();

  // Sends start; returns the id (fails the test on error).
  std::string StartMigration(const std::vector<std::string>& images, uint64_t network_kbps = 0);
  // Waits for completion, finishes, and compares every image byte for byte.
  void FinishAndCompare(const std::string& id, const std::vector<std::string>& images);
  nlohmann::json Progress(const std::string& id);

  std::unique_ptr<TempDir> tmp_;
  std::string key_;
  std::string target_addr_;
  std::unique_ptr<Daemon> a_, b_;
  DaemonConfig a_cfg_, b_cfg_;
};

}  // namespace migratefs::testing
