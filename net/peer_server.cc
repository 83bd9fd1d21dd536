// PeerServer: an Asio acceptor thread plus one thread per session (ReceiveSession).
#include "net/peer_server.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <list>
#include <mutex>
#include <thread>

#include "net/address.h"
#include "net/frame.h"
#include "net/receive_session.h"

namespace migratefs::net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

struct SessionSlot {
  std::unique_ptr<ReceiveSession> session;
  std::thread thread;
  std::atomic<bool> finished{false};
};

class PeerServerImpl final : public PeerServer {
 public:
  PeerServerImpl(const PeerServerOptions& opts, ReceiveObserver* observer)
      : opts_(opts), observer_(observer), acceptor_(io_), retry_(io_) {}

  ~PeerServerImpl() override {
    asio::post(io_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
      retry_.cancel();
    });
    if (accept_thread_.joinable()) accept_thread_.join();
    std::list<std::unique_ptr<SessionSlot>> slots;
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_ = true;
      slots.swap(slots_);
    }
    for (auto& s : slots) s->session->Stop();
    for (auto& s : slots) s->thread.join();
  }

  Status Start() {
    if (opts_.key.empty() && !opts_.insecure) {
      return MakeError(errc::kInvalidArgument, "peer listener needs a pre-shared key (keyfile=) or -o insecure");
    }
    if (opts_.src_dirfd < 0) return MakeError(errc::kInvalidArgument, "peer listener: no served directory");
    if (opts_.max_sessions == 0) return MakeError(errc::kInvalidArgument, "peer listener: max_sessions is 0");
    auto hp = ParseHostPort(opts_.listen);
    if (!hp.ok()) return hp.error();
    boost::system::error_code ec;
    tcp::endpoint ep;
    if (hp.value().host.empty()) {
      ep = tcp::endpoint(tcp::v6(), static_cast<uint16_t>(std::stoi(hp.value().port)));
    } else {
      tcp::resolver res(io_);
      auto r = res.resolve(hp.value().host, hp.value().port, tcp::resolver::passive, ec);
      if (ec || r.empty()) {
        return MakeError(errc::kInvalidArgument, "listen address " + opts_.listen + ": " + ec.message());
      }
      ep = r.begin()->endpoint();
    }
    acceptor_.open(ep.protocol(), ec);
    if (ec && hp.value().host.empty()) {  // no IPv6 on this host: any IPv4 address
      ep = tcp::endpoint(tcp::v4(), ep.port());
      acceptor_.open(ep.protocol(), ec);
    }
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec && ep.protocol() == tcp::v6() && hp.value().host.empty()) {
      acceptor_.set_option(asio::ip::v6_only(false), ec);
    }
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return MakeError(errc::kIo, "listen on " + opts_.listen + ": " + ec.message());
    port_ = acceptor_.local_endpoint().port();
    cfg_.src_dirfd = opts_.src_dirfd;
    cfg_.key = opts_.key;
    cfg_.observer = observer_;
    cfg_.instance_id = opts_.instance_id;
    cfg_.receiving = &receiving_;
    cfg_.handshake_timeout = opts_.handshake_timeout;
    cfg_.idle_takeover = opts_.idle_takeover;
    Accept();
    accept_thread_ = std::thread([this] { io_.run(); });
    spdlog::info("peer server: listening on {} (port {}){}", opts_.listen, port_,
                 opts_.key.empty() ? ", INSECURE: no authentication" : "");
    return OkStatus();
  }

  uint16_t port() const override { return port_; }

 private:
  void Accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket sock) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (!ec) {
        OnAccepted(std::move(sock));
        Accept();
        return;
      }
      // EMFILE, ENOBUFS, ...: do not spin; try again shortly.
      spdlog::warn("peer server: accept: {}", ec.message());
      retry_.expires_after(std::chrono::milliseconds(200));
      retry_.async_wait([this](const boost::system::error_code& e) {
        if (!e) Accept();
      });
    });
  }

  void OnAccepted(tcp::socket sock) {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) return;
    // Reap finished sessions so the limit counts live ones only.
    for (auto it = slots_.begin(); it != slots_.end();) {
      if ((*it)->finished.load()) {
        (*it)->thread.join();
        it = slots_.erase(it);
      } else {
        ++it;
      }
    }
    if (slots_.size() >= opts_.max_sessions) {
      spdlog::warn("peer server: refusing a connection: {} sessions already", slots_.size());
      FrameHeader h;
      h.type = wire::FrameType::kError;
      const std::string f = EncodeFrame(
          h, EncodeErrorPayload(MakeError(errc::kBusy, "too many peer sessions on this daemon; retry later")));
      boost::system::error_code ignored;
      sock.non_blocking(true, ignored);
      sock.write_some(asio::buffer(f), ignored);  // best effort: the peer learns why
      return;
    }
    boost::system::error_code ec;
    const int fd = sock.release(ec);
    if (ec) return;
    auto slot = std::make_unique<SessionSlot>();
    slot->session = std::make_unique<ReceiveSession>(fd, cfg_);
    SessionSlot* raw = slot.get();
    slot->thread = std::thread([raw] {
      raw->session->Run();
      raw->finished.store(true);
    });
    slots_.push_back(std::move(slot));
  }

  const PeerServerOptions opts_;
  ReceiveObserver* const observer_;
  SessionConfig cfg_;
  ReceivingSet receiving_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::steady_timer retry_;
  std::thread accept_thread_;
  uint16_t port_ = 0;

  std::mutex mu_;
  bool stopping_ = false;
  std::list<std::unique_ptr<SessionSlot>> slots_;
};

}  // namespace

Result<std::unique_ptr<PeerServer>> PeerServer::Start(const PeerServerOptions& opts, ReceiveObserver* observer) {
  auto s = std::make_unique<PeerServerImpl>(opts, observer);
  Status st = s->Start();
  if (!st.ok()) return st.error();
  return std::unique_ptr<PeerServer>(std::move(s));
}

}  // namespace migratefs::net
