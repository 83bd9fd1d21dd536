// A TCP relay on loopback between a source daemon and its target that can slow down
// or stall the source-to-target direction: the "slow target" of the asynchronous
// mirror tests (tc has no netem here, so delay is made in user space).
//
// One listening port; each accepted connection is relayed to `target` by two threads
// (one per direction). Source-to-target bytes pass at most `bytes_per_s` (0 = as
// fast as they come); the reverse direction (acks) is never slowed. Relay buffers are
// small, so the kernel's socket buffers (a few MiB) are the only slack.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace migratefs::testing {

class ThrottledProxy {
 public:
  // Relays 127.0.0.1:port() -> target_port on 127.0.0.1.
  explicit ThrottledProxy(int target_port);
  ~ThrottledProxy();  // closes every relayed connection
  ThrottledProxy(const ThrottledProxy&) = delete;
  ThrottledProxy& operator=(const ThrottledProxy&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void SetRate(uint64_t bytes_per_s) { rate_.store(bytes_per_s); }
  uint64_t forwarded() const { return forwarded_.load(); }  // source -> target bytes
  // Cuts every connection relayed so far (both ends see it end); later ones relay.
  void CutAll();

 private:
  void AcceptLoop();
  void Pump(int from, int to, bool throttled);

  int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> rate_{0};
  std::atomic<uint64_t> forwarded_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> pumps_;
  std::vector<int> fds_;
};

}  // namespace migratefs::testing
