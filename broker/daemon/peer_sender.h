// The real PeerSender: a worker thread that seals each message (peer_auth.h) and
// delivers it to the peer's `listen` address from the config, one connection per
// message, bounded by peer_timeout. A vanished peer is logged and skipped; the queue
// is bounded so a dead peer can never make the broker grow without limit.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <functional>
#include <mutex>
#include <thread>

#include "broker/daemon/broker.h"

namespace migratefs::broker {

class AsyncPeerSender : public PeerSender {
 public:
  // `now` gives seconds since the epoch for the message timestamps.
  AsyncPeerSender(const BrokerConfig& config, std::function<double()> now);
  ~AsyncPeerSender() override;  // drops what is still queued, joins the worker

  void Send(const std::string& host, nlohmann::json body) override;
  // Waits until the queue is empty and nothing is in flight (tests).
  void Flush();

  static constexpr size_t kMaxQueued = 256;

 private:
  void Run();

  const BrokerConfig& config_;
  std::function<double()> now_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<std::pair<std::string, nlohmann::json>> queue_;
  bool busy_ = false;
  std::map<std::string, double> last_warned_;  // worker thread only
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace migratefs::broker
