// The broker's own sockets, JSON lines (README "Socket ops"):
//  - TCP `listen` for peers and the scheduler: every line must be an authenticated
//    envelope (peer_auth.h); anything else gets auth_failed and changes nothing.
//  - UNIX `socket` (mode 0600) for local monitoring and operators: plain requests;
//    envelopes are accepted too (and checked).
// One thread per connection (at most kMaxConnections); lines idle longer than
// kIdleTimeout end the connection. Stop() ends every connection promptly.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "broker/daemon/broker.h"
#include "broker/daemon/line_socket.h"
#include "broker/daemon/peer_auth.h"

namespace migratefs::broker {

// Executes one request body against the broker; `from` is the authenticated sender
// ("" for the local socket). Always returns an answer object ({"ok":...}).
nlohmann::json HandleRequest(Broker& broker, const nlohmann::json& body, const std::string& from,
                             double now_s);

class BrokerServer {
 public:
  static constexpr size_t kMaxConnections = 64;
  static constexpr Millis kIdleTimeout{30'000};

  // Binds config.listen and/or config.socket. io_error / busy naming the address.
  static Result<std::unique_ptr<BrokerServer>> Start(const BrokerConfig& config, Broker* broker,
                                                     MessageVerifier* verifier,
                                                     std::function<double()> now);
  ~BrokerServer();
  void Stop();
  int tcp_port() const;  // the bound port (config may say :0 in tests)

 private:
  BrokerServer(const BrokerConfig& config, Broker* broker, MessageVerifier* verifier,
               std::function<double()> now);
  void AcceptLoop();
  void Serve(Fd fd, bool authenticated_only);
  std::string Answer(const std::string& line, bool authenticated_only);

  const BrokerConfig& config_;
  Broker* broker_;
  MessageVerifier* verifier_;
  std::function<double()> now_;
  Fd tcp_, unix_, wake_read_, wake_write_;
  int tcp_port_ = 0;
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable all_closed_;
  std::set<int> open_fds_;
};

}  // namespace migratefs::broker
