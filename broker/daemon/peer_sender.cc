#include "broker/daemon/peer_sender.h"

#include <spdlog/spdlog.h>

#include "broker/daemon/line_socket.h"
#include "broker/daemon/peer_auth.h"

namespace migratefs::broker {

AsyncPeerSender::AsyncPeerSender(const BrokerConfig& config, std::function<double()> now)
    : config_(config), now_(std::move(now)), worker_([this] { Run(); }) {}

AsyncPeerSender::~AsyncPeerSender() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    queue_.clear();
  }
  wake_.notify_all();
  worker_.join();
}

void AsyncPeerSender::Send(const std::string& host, nlohmann::json body) {
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= kMaxQueued) {
      spdlog::warn("peer queue full; dropping {} to {}", body.value("op", "?"), host);
      return;
    }
    queue_.emplace_back(host, std::move(body));
  }
  wake_.notify_one();
}

void AsyncPeerSender::Flush() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] { return (queue_.empty() && !busy_) || stop_; });
}

void AsyncPeerSender::Run() {
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    auto [host, body] = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    std::string address = config_.PeerAddress(host);
    std::string op = body.value("op", "?");
    if (address.empty()) {
      spdlog::warn("no [[peer]] named \"{}\" in the config; {} not sent", host, op);
    } else {
      std::string line = SealMessage(config_.key, std::move(body), config_.host, now_());
      auto timeout = Millis(static_cast<int64_t>(config_.peer_timeout_s * 1000));
      auto answer = RoundTrip(address, line, timeout);
      if (!answer) {
        // One warning per peer per 30 s: a dead peer is asked every period.
        double now = now_();
        bool warn = now - last_warned_[host] >= 30;
        if (warn) last_warned_[host] = now;
        spdlog::log(warn ? spdlog::level::warn : spdlog::level::debug,
                    "peer {} ({}) unreachable, {} not delivered: {}", host, address, op,
                    answer.error().message);
      } else if (answer.value().find("\"ok\":true") == std::string::npos) {
        spdlog::warn("peer {} refused {}: {}", host, op, answer.value().substr(0, 300));
      } else {
        spdlog::debug("{} delivered to {}", op, host);
      }
    }
    lock.lock();
    busy_ = false;
    if (queue_.empty()) idle_.notify_all();
  }
}

}  // namespace migratefs::broker
