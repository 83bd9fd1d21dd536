#include "net/control/control_server.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <future>
#include <thread>

#include "net/control/control_session.h"
#include "net/control/response.h"
#include "net/control/socket_path.h"

namespace migratefs::control {

namespace asio = boost::asio;
using boost::system::error_code;
using Protocol = asio::local::stream_protocol;

class ControlServer::Impl {
 public:
  Impl(std::string path, MigrationService& service, ControlServerOptions options,
       BoundSocket bound)
      : path_(std::move(path)),
        options_(options),
        bound_(bound),
        env_{io_, workers_, long_workers_, long_running_, service, options_, registry_},
        workers_(options_.worker_threads == 0 ? 1 : options_.worker_threads),
        long_workers_(options_.long_threads == 0 ? 1 : options_.long_threads),
        acceptor_(io_),
        accept_retry_(io_) {}

  ~Impl() { Stop(); }

  // Takes over the bound socket, listens and starts the I/O thread.
  Status Listen() {
    error_code ec;
    acceptor_.assign(Protocol(), bound_.fd, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      if (!acceptor_.is_open()) close(bound_.fd);
      RemoveControlSocket(path_, bound_);
      return MakeError(errc::kIo, "cannot listen on " + path_ + ": " + ec.message());
    }
    Accept();
    io_thread_ = std::thread([this] { RunIo(); });
    return OkStatus();
  }

  void Stop() {
    if (stopped_) return;
    stopped_ = true;
    if (io_thread_.joinable()) {
      std::promise<void> closed;
      asio::post(io_, [this, &closed] {
        stopping_ = true;
        error_code ignored;
        acceptor_.close(ignored);
        accept_retry_.cancel();
        for (const auto& session : registry_.Snapshot()) session->Close();
        closed.set_value();
      });
      closed.get_future().wait();
    }
    // Queued finish/verify jobs are dropped; running ones finish (they hold the service).
    workers_.stop();
    long_workers_.stop();
    workers_.join();
    long_workers_.join();
    work_guard_.reset();
    io_.stop();
    if (io_thread_.joinable()) io_thread_.join();
    RemoveControlSocket(path_, bound_);
  }

  const std::string& path() const { return path_; }
  size_t connection_count() const { return registry_.size(); }

 private:
  void RunIo() {
    for (;;) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {  // a bug in a handler; keep serving the rest
        spdlog::error("control: handler failed: {}", e.what());
      }
    }
  }

  void Accept() {
    acceptor_.async_accept([this](const error_code& ec, Protocol::socket socket) {
      OnAccept(ec, std::move(socket));
    });
  }

  void OnAccept(const error_code& ec, Protocol::socket socket) {
    if (stopping_) return;
    if (ec) {
      // Out of descriptors or memory: accepting again at once would spin. Pending clients
      // wait in the listen backlog meanwhile.
      if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
          ec == asio::error::no_memory || ec.value() == ENFILE) {
        spdlog::warn("control: accept failed ({}); retrying in 100 ms", ec.message());
        accept_retry_.expires_after(std::chrono::milliseconds(100));
        accept_retry_.async_wait([this](const error_code& wait_ec) {
          if (!wait_ec && !stopping_) Accept();
        });
        return;
      }
      Accept();
      return;
    }
    if (registry_.size() >= options_.max_connections) {
      RejectBusy(std::move(socket));
    } else {
      std::make_shared<Session>(env_, std::move(socket))->Begin();
    }
    Accept();
  }

  // Over the cap: one error line, written without waiting (a fresh socket's send buffer
  // has room for it), then close.
  void RejectBusy(Protocol::socket socket) {
    std::string line = ToLine(ErrorAnswer(
        MakeError(errc::kBusy, "too many control connections (" +
                                   std::to_string(options_.max_connections) +
                                   " open); try again later"),
        std::nullopt));
    error_code ignored;
    socket.non_blocking(true, ignored);
    socket.write_some(asio::buffer(line), ignored);
    socket.close(ignored);
  }

  const std::string path_;
  const ControlServerOptions options_;
  const BoundSocket bound_;
  // Members are destroyed in reverse order: sessions still referenced by dropped
  // handlers die with workers_ / io_, and then still use env_ and registry_.
  SessionRegistry registry_;
  std::atomic<unsigned> long_running_{0};
  SessionEnvironment env_;  // refers to io_ and the pools; used only once they exist
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_guard_ =
      asio::make_work_guard(io_);
  asio::thread_pool workers_;
  asio::thread_pool long_workers_;
  Protocol::acceptor acceptor_;
  asio::steady_timer accept_retry_;
  std::thread io_thread_;
  bool stopped_ = false;   // Stop() ran (caller's thread)
  bool stopping_ = false;  // I/O thread: refuse new work
};

Result<std::unique_ptr<ControlServer>> ControlServer::Start(const std::string& path,
                                                            MigrationService* service,
                                                            ControlServerOptions options) {
  if (service == nullptr) return MakeError(errc::kInternal, "ControlServer needs a service");
  Result<BoundSocket> bound = BindControlSocket(path);
  if (!bound) return bound.error();
  auto impl = std::make_unique<Impl>(path, *service, options, bound.value());
  if (Status listening = impl->Listen(); !listening) return listening.error();
  return std::unique_ptr<ControlServer>(new ControlServer(std::move(impl)));
}

ControlServer::ControlServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ControlServer::~ControlServer() { Stop(); }
void ControlServer::Stop() { impl_->Stop(); }
const std::string& ControlServer::path() const { return impl_->path(); }
size_t ControlServer::connection_count() const { return impl_->connection_count(); }

}  // namespace migratefs::control
