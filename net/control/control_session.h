// One control-socket connection: reads request lines, runs them, writes the answers;
// or, after `events`, streams event lines. Internal to the control server.
//
// Threading: every member function runs on the server's single I/O thread, except the
// event sink (service thread; touches only the EventQueue) and the slow-command job
// (worker pool; touches only the service and posts its answer back).
#pragma once

#include <boost/asio.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "migratefs/migration_service.h"
#include "net/control/control_server.h"
#include "net/control/event_queue.h"
#include "net/control/request.h"
#include "net/control/response.h"

namespace migratefs::control {

class Session;

// The open sessions, for the connection cap and for Stop(). Thread-safe: a session may
// be destroyed on whichever thread drops the last reference.
class SessionRegistry {
 public:
  void Add(const std::shared_ptr<Session>& session);
  void Remove(const Session* session);
  size_t size() const;
  std::vector<std::shared_ptr<Session>> Snapshot() const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<const Session*, std::weak_ptr<Session>> sessions_;
};

// What every session of one server shares. Outlives the sessions.
struct SessionEnvironment {
  boost::asio::io_context& io;
  boost::asio::thread_pool& workers;
  boost::asio::thread_pool& long_workers;  // profile: IsLong()
  std::atomic<unsigned>& long_running;     // jobs on long_workers, queued or running
  MigrationService& service;
  const ControlServerOptions& options;
  SessionRegistry& registry;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  using Socket = boost::asio::local::stream_protocol::socket;

  Session(SessionEnvironment& env, Socket socket);
  ~Session();

  void Begin();  // registers and starts reading
  void Close();  // idempotent; drops the subscription, if any

 private:
  using Clock = std::chrono::steady_clock;

  void ReadMore();
  void OnRead(const boost::system::error_code& ec, size_t n);
  // Runs the next complete buffered line, or reads more when there is none.
  void ProcessBuffered();
  void RunLine(std::string_view line);
  void SendAnswer(const nlohmann::json& answer, bool close_after);

  void StartEvents(const Tag& tag);
  void DrainEvents();  // moves queued event lines to the socket

  void SetDeadline(Clock::time_point deadline);
  void OnDeadline(const boost::system::error_code& ec);

  SessionEnvironment& env_;
  Socket socket_;
  boost::asio::steady_timer deadline_timer_;
  Clock::time_point deadline_ = Clock::time_point::max();
  std::optional<Clock::time_point> partial_line_since_;

  std::string buffer_;                  // bytes read, not yet consumed as lines
  std::array<char, 16 * 1024> chunk_;  // one read's worth
  bool closed_ = false;
  bool writing_ = false;  // an async_write is in flight (events mode)

  // events mode
  bool streaming_ = false;
  std::shared_ptr<EventQueue> events_;
  std::unique_ptr<MigrationService::Subscription> subscription_;
  std::string in_flight_;  // the event batch being written
};

}  // namespace migratefs::control
