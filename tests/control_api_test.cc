// The control API against real daemons: limit accuracy and reaction time (as
// properties with tolerances wide enough for a noisy 2-core machine), limits changed
// mid-phase, a disk limit that slows only its own image, progress that agrees with the
// bytes moved, verify finding a corrupted block, events in order.
#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/xattr.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>

#include "tests/migration_fixture.h"

namespace migratefs::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
constexpr uint64_t kMiB = 1 << 20;

class ControlApiTest : public MigrationTest {
 protected:
  uint64_t Sent(const std::string& id) { return Progress(id).value("bytes_sent", uint64_t(0)); }

  // Mean rate (bytes/s) and worst 1 s window deviation over `seconds`, sampled every
  // 100 ms, after the limit has had `settle` to take effect.
  struct RateSample {
    double mean = 0;
    double worst_window = 0;  // relative deviation of the worst 1 s window
  };
  RateSample MeasureRate(const std::string& id, double want, int seconds) {
    std::vector<std::pair<double, uint64_t>> samples;
    auto t0 = Clock::now();
    while (Clock::now() - t0 < std::chrono::seconds(seconds)) {
      samples.push_back({std::chrono::duration<double>(Clock::now() - t0).count(), Sent(id)});
      std::this_thread::sleep_for(100ms);
    }
    RateSample r;
    r.mean = double(samples.back().second - samples.front().second) / (samples.back().first - samples.front().first);
    for (size_t i = 0; i < samples.size(); i++)
      for (size_t j = i + 1; j < samples.size(); j++)
        if (samples[j].first - samples[i].first >= 1.0) {
          double rate = double(samples[j].second - samples[i].second) / (samples[j].first - samples[i].first);
          r.worst_window = std::max(r.worst_window, std::abs(rate - want) / want);
          break;
        }
    return r;
  }
};

TEST_F(ControlApiTest, NetworkLimitHoldsAndChangesMidPhase) {
  StartDaemons();
  WritePatternFile(a_->Src("big.img"), 768 * kMiB, 31);
  std::string id = StartMigration({"big.img"}, 1000);  // 1 MB/s
  ASSERT_TRUE(WaitForPhase(*a_, id, "bulk", 20s));
  std::this_thread::sleep_for(500ms);
  for (uint64_t kbps : {1000, 10000, 100000}) {
    ASSERT_TRUE(a_->Request({{"op", "set_network_limit"}, {"id", id}, {"kbps", kbps}}).value("ok", false));
    std::this_thread::sleep_for(300ms);  // applied within 200 ms; a little slack
    RateSample r = MeasureRate(id, double(kbps) * 1000, 4);
    EXPECT_NEAR(r.mean, double(kbps) * 1000, double(kbps) * 1000 * 0.10) << kbps << " KB/s";
    // A sanity bound only: one 1 s window also carries the jitter of two control
    // round trips on a shared 2-core machine (0.25 failed 1 run in 2 even with the
    // code of 8a079a2). The accuracy itself is measured in bench/limits.
    EXPECT_LT(r.worst_window, 0.5) << kbps << " KB/s: worst 1 s window";
    auto p = Progress(id);
    EXPECT_EQ(p.value("network_limit_kbps", uint64_t(0)), kbps);
    EXPECT_EQ(p.value("phase", ""), "bulk");  // changed mid-phase
  }
  a_->Request({{"op", "set_network_limit"}, {"id", id}, {"kbps", 0}});
  FinishAndCompare(id, {"big.img"});
}

// O_DIRECT writer: bytes written through the mount in `d`.
uint64_t WriteFor(const std::string& path, std::chrono::milliseconds d) {
  int fd = open(path.c_str(), O_WRONLY | O_DIRECT);
  if (fd < 0) return 0;
  void* mem;
  if (posix_memalign(&mem, 4096, 256 * 1024) != 0) return 0;
  std::memset(mem, 'd', 256 * 1024);
  uint64_t done = 0;
  auto end = Clock::now() + d;
  for (uint64_t i = 0; Clock::now() < end; i++) {
    if (pwrite(fd, mem, 256 * 1024, off_t((i % 64) * 256 * 1024)) != 256 * 1024) break;
    done += 256 * 1024;
  }
  free(mem);
  close(fd);
  return done;
}

TEST_F(ControlApiTest, DiskLimitSlowsOnlyTheThrottledImage) {
  StartDaemons();
  WritePatternFile(a_->Src("slow.img"), 16 * kMiB, 32);
  WritePatternFile(a_->Src("free.img"), 16 * kMiB, 33);
  std::string slow = StartMigration({"slow.img"});
  std::string fast = StartMigration({"free.img"});
  ASSERT_TRUE(WaitForCompletion(*a_, slow, 30s));
  ASSERT_TRUE(WaitForCompletion(*a_, fast, 30s));
  ASSERT_TRUE(a_->Request({{"op", "set_disk_limit"}, {"id", slow}, {"kbps", 5000}}).value("ok", false));
  uint64_t slow_bytes = 0, free_bytes = 0;
  std::thread t1([&] { slow_bytes = WriteFor(a_->Mnt("slow.img"), 3000ms); });
  std::thread t2([&] { free_bytes = WriteFor(a_->Mnt("free.img"), 3000ms); });
  t1.join();
  t2.join();
  double slow_rate = double(slow_bytes) / 3.0;
  EXPECT_LT(slow_rate, 5e6 * 1.25) << "disk limit not applied";
  EXPECT_GT(slow_rate, 5e6 * 0.6) << "disk limit far too strict";
  EXPECT_GT(double(free_bytes) / 3.0, 3 * slow_rate) << "the other image was slowed too";
  auto p = a_->Request({{"op", "query_progress"}, {"id", slow}, {"what", "disk"}});
  EXPECT_EQ(p.value("disk_limit_kbps", uint64_t(0)), 5000u);
  EXPECT_GT(p.value("kbps", 0.0), 1000.0) << p.dump();
  ASSERT_TRUE(a_->Request({{"op", "set_disk_limit"}, {"id", slow}, {"kbps", 0}}).value("ok", false));
  EXPECT_GT(double(WriteFor(a_->Mnt("slow.img"), 1000ms)), 3 * 5e6 * 1.0) << "lifting the limit did not apply";
  FinishAndCompare(slow, {"slow.img"});
  FinishAndCompare(fast, {"free.img"});
}

TEST_F(ControlApiTest, ProgressAgreesWithTheBytesMoved) {
  StartDaemons();
  WritePatternFile(a_->Src("p.img"), 40 * kMiB + 4096, 34);  // unaligned tail
  std::string id = StartMigration({"p.img"});
  ASSERT_TRUE(WaitForCompletion(*a_, id, 30s));
  auto p = Progress(id);
  // Nothing wrote: every byte went exactly once.
  EXPECT_EQ(p.value("bytes_sent", uint64_t(0)), 40 * kMiB + 4096) << p.dump();
  EXPECT_EQ(p.value("bytes_total", uint64_t(0)), 40 * kMiB + 4096);
  EXPECT_EQ(p.value("bytes_left", uint64_t(1)), 0u);
  EXPECT_EQ(p.value("dirty_blocks", uint64_t(1)), 0u);
  EXPECT_EQ(p.value("eta_s", -2.0), 0.0);
  FinishAndCompare(id, {"p.img"});
}

TEST_F(ControlApiTest, VerifyFindsABlockCorruptedOnTheTarget) {
  StartDaemons();
  WritePatternFile(a_->Src("v.img"), 8 * kMiB, 35);
  std::string id = StartMigration({"v.img"});
  ASSERT_TRUE(WaitForCompletion(*a_, id, 30s));
  auto clean = a_->Request({{"op", "verify"}, {"id", id}});
  ASSERT_TRUE(clean.value("ok", false)) << clean.dump();
  EXPECT_TRUE(clean.value("identical", false)) << clean.dump();
  EXPECT_EQ(clean.value("blocks_compared", 0), 16);
  // Corrupt one byte of block 5 behind the target daemon's back.
  int fd = open(b_->Src("v.img").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "X", 1, 5 * 512 * 1024 + 77), 1);
  close(fd);
  auto bad = a_->Request({{"op", "verify"}, {"id", id}});
  ASSERT_TRUE(bad.value("ok", false)) << bad.dump();
  EXPECT_FALSE(bad.value("identical", true));
  ASSERT_EQ(bad["mismatches"].size(), 1u) << bad.dump();
  EXPECT_EQ(bad["mismatches"][0].value("offset", uint64_t(0)), 5u * 512 * 1024);
  EXPECT_EQ(bad["mismatches"][0].value("length", uint64_t(0)), 512u * 1024);
  EXPECT_EQ(bad["mismatches"][0].value("image", ""), "v.img");
}

// After finish the target has closed its handles (the VM may run there): verify opens
// the copy read-only over a connection of its own, changes nothing there, and never
// leaks an internal handle into an error.
TEST_F(ControlApiTest, VerifyAfterFinishComparesTheCopies) {
  StartDaemons();
  WritePatternFile(a_->Src("vf.img"), 8 * kMiB, 37);
  std::string id = StartMigration({"vf.img"});
  FinishAndCompare(id, {"vf.img"});
  auto clean = a_->Request({{"op", "verify"}, {"id", id}});
  ASSERT_TRUE(clean.value("ok", false)) << clean.dump();
  EXPECT_TRUE(clean.value("identical", false)) << clean.dump();
  EXPECT_EQ(clean.value("blocks_compared", 0), 16);
  // The target's copy is the VM's now: writable through its mount, with no mark left.
  int wfd = open(b_->Mnt("vf.img").c_str(), O_RDWR);
  ASSERT_GE(wfd, 0) << "verify left the target copy locked: " << strerror(errno);
  ASSERT_EQ(pwrite(wfd, "Y", 1, 3 * 512 * 1024 + 5), 1);
  ASSERT_EQ(fsync(wfd), 0);
  close(wfd);
  char mark[64];
  EXPECT_LT(getxattr(b_->Src("vf.img").c_str(), "user.migratefs.state", mark, sizeof mark), 0);
  auto moved = a_->Request({{"op", "verify"}, {"id", id}});
  ASSERT_TRUE(moved.value("ok", false)) << moved.dump();
  EXPECT_FALSE(moved.value("identical", true));
  ASSERT_EQ(moved["mismatches"].size(), 1u) << moved.dump();
  EXPECT_EQ(moved["mismatches"][0].value("offset", uint64_t(0)), 3u * 512 * 1024);
  // No copy there at all: a clear error naming the image.
  ASSERT_EQ(unlink(b_->Src("vf.img").c_str()), 0);
  auto gone = a_->Request({{"op", "verify"}, {"id", id}});
  EXPECT_FALSE(gone.value("ok", true)) << gone.dump();
  EXPECT_EQ(gone["error"].value("code", ""), "not_found") << gone.dump();
  EXPECT_NE(gone["error"].value("message", "").find("vf.img"), std::string::npos) << gone.dump();
  EXPECT_EQ(gone["error"].value("message", "").find("handle"), std::string::npos) << gone.dump();
}

TEST_F(ControlApiTest, EventsArriveInOrder) {
  StartDaemons();
  WritePatternFile(a_->Src("e.img"), 8 * kMiB, 36);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, a_->control().c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  std::string sub = "{\"op\":\"events\"}\n";
  ASSERT_EQ(write(fd, sub.data(), sub.size()), ssize_t(sub.size()));
  std::this_thread::sleep_for(200ms);
  std::string id = StartMigration({"e.img"});
  FinishAndCompare(id, {"e.img"});
  std::this_thread::sleep_for(300ms);
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string all;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) all.append(buf, size_t(n));
  close(fd);
  std::vector<std::string> seq;
  size_t pos = 0;
  for (size_t nl; (nl = all.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    auto j = nlohmann::json::parse(all.substr(pos, nl - pos), nullptr, false);
    if (j.is_object() && j.value("id", "") == id) seq.push_back(j.value("event", "") + ":" + j.value("phase", ""));
  }
  std::vector<std::string> want = {"phase:connecting", "phase:bulk", "phase:dirty", "phase:mirror", "completed:mirror",
                                   "finished:finished"};
  EXPECT_EQ(seq, want) << all;
}

// One HTTP/1.0 GET on loopback; returns the whole response.
std::string HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return "connect failed";
  }
  std::string req = "GET " + path + " HTTP/1.0\r\n\r\n";
  if (write(fd, req.data(), req.size()) != ssize_t(req.size())) return "write failed";
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) out.append(buf, size_t(n));
  close(fd);
  return out;
}

TEST_F(ControlApiTest, MetricsEndpointServesPrometheusText) {
  int port = FreeTcpPort();
  b_ = std::make_unique<Daemon>(*tmp_ / "b", b_cfg_);
  a_cfg_.extra_opts = "metrics=127.0.0.1:" + std::to_string(port);
  a_ = std::make_unique<Daemon>(*tmp_ / "a", a_cfg_);
  ASSERT_TRUE(b_->Start());
  ASSERT_TRUE(a_->Start());
  WritePatternFile(a_->Src("m.img"), 4 * kMiB, 37);
  std::string id = StartMigration({"m.img"});
  ASSERT_TRUE(WaitForCompletion(*a_, id, 30s));
  std::string text = HttpGet(port, "/metrics");
  EXPECT_NE(text.find("200"), std::string::npos) << text;
  EXPECT_NE(text.find("migratefs_phase{id=\"" + id + "\",phase=\"mirror\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("migratefs_bytes_sent_total{id=\"" + id + "\"} 4194304"), std::string::npos) << text;
  FinishAndCompare(id, {"m.img"});
}

}  // namespace
}  // namespace migratefs::testing
