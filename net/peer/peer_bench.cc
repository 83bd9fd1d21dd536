// Loopback throughput of the peer protocol: a PeerServer writing into a temp dir and a
// PeerClient sending an image of N MiB as 512 KiB data frames (window-limited), then
// FinishImage (which fsyncs). Prints MB/s for the send phase and including the fsync.
//
//   net_peer_bench [MiB=2048] [dir=/tmp] [block_KiB=512] [window_MiB=64]
//
// Not a test: figures depend on the machine (bench/ collects the published ones).
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "net/peer/peer_client.h"
#include "net/peer/peer_server.h"

using namespace migratefs;       // NOLINT
using namespace migratefs::net;  // NOLINT

int main(int argc, char** argv) {
  const uint64_t mib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 2048;
  const std::string base = argc > 2 ? argv[2] : "/tmp";
  const uint32_t block = (argc > 3 ? static_cast<uint32_t>(std::atoi(argv[3])) : 512) * 1024;
  const uint64_t window = (argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 64) << 20;
  std::string tmpl = base + "/mfsbench.XXXXXX";
  if (!::mkdtemp(tmpl.data())) {
    std::perror("mkdtemp");
    return 1;
  }
  const int dirfd = ::open(tmpl.c_str(), O_RDONLY | O_DIRECTORY);
  PeerServerOptions so;
  so.listen = "127.0.0.1:0";
  so.key = "bench-key";
  so.src_dirfd = dirfd;
  auto server = PeerServer::Start(so, nullptr);
  if (!server.ok()) {
    std::fprintf(stderr, "server: %s\n", server.error().message.c_str());
    return 1;
  }
  PeerClientOptions co;
  co.target = "127.0.0.1:" + std::to_string(server.value()->port());
  co.key = "bench-key";
  co.max_inflight_bytes = window;
  auto client = PeerClient::Connect(co);
  if (!client.ok()) {
    std::fprintf(stderr, "client: %s\n", client.error().message.c_str());
    return 1;
  }
  auto& c = *client.value();
  const uint64_t size = mib << 20;
  auto img = c.OpenImage("bench.img", size, block, false);
  if (!img.ok()) {
    std::fprintf(stderr, "open: %s\n", img.error().message.c_str());
    return 1;
  }
  // A few distinct non-zero blocks, cycled (the receiver does not look at contents).
  std::vector<std::string> blocks;
  for (int b = 0; b < 8; ++b) {
    std::string s(block, '\0');
    for (size_t i = 0; i < s.size(); i += 8) s[i] = static_cast<char>(b * 31 + i / 4096 + 1);
    blocks.push_back(std::move(s));
  }
  std::atomic<uint64_t> errors{0};
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t off = 0, n = 0; off < size; off += block, ++n) {
    if (!c.WaitForWindow(block, std::chrono::seconds(30))) {
      std::fprintf(stderr, "window wait failed (alive=%d)\n", c.alive());
      return 1;
    }
    c.SendData(img.value().handle, off, blocks[n % blocks.size()].data(), block, [&](const Status& s) {
      if (!s.ok()) ++errors;
    });
  }
  while (c.inflight_bytes() > 0 && c.alive()) std::this_thread::sleep_for(std::chrono::microseconds(200));
  const auto t1 = std::chrono::steady_clock::now();
  Status fin = c.FinishImage(img.value().handle);
  const auto t2 = std::chrono::steady_clock::now();
  const double s1 = std::chrono::duration<double>(t1 - t0).count();
  const double s2 = std::chrono::duration<double>(t2 - t0).count();
  std::printf("sent %llu MiB in %u KiB frames, window %llu MiB: %.0f MB/s acked (%.2f s), %.0f MB/s incl. fsync "
              "(%.2f s), errors %llu, finish %s\n",
              static_cast<unsigned long long>(mib), block / 1024, static_cast<unsigned long long>(window >> 20),
              size / s1 / 1e6, s1, size / s2 / 1e6, s2, static_cast<unsigned long long>(errors.load()),
              fin.ok() ? "ok" : fin.error().message.c_str());
  client.value().reset();
  server.value().reset();
  ::unlinkat(dirfd, "bench.img", 0);
  ::close(dirfd);
  ::rmdir(tmpl.c_str());
  return errors.load() == 0 && fin.ok() ? 0 : 1;
}
