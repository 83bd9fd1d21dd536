// PeerServer: an Asio acceptor thread that also holds the connections that have sent
// nothing yet, plus one thread per connection that has (ReceiveSession: handshake,
// then the session). peer_server.h, "Admission", says how connections are counted
// and which one a newcomer pushes out.
#include "net/peer/peer_server.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <exception>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "net/address.h"
#include "net/peer/frame.h"
#include "net/log_throttle.h"
#include "net/peer/handshake.h"
#include "net/peer/receive_session.h"

namespace migratefs::net {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr milliseconds kAcceptBackoff{200};        // after accept() or a session setup failed
constexpr std::chrono::seconds kLogEvery{10};      // recurring warnings, at most this often

class PeerServerImpl;

// Where a connection is, in the order it goes through.
enum class Stage {
  kSilent,       // a silent stranger: has sent nothing; waits in the acceptor's loop
  kHandshaking,  // a talking stranger: its session thread runs the handshake
  kSession,      // authenticated: counts against max_sessions, never evicted
  kEnded,        // no thread running (any more): to be reaped
};

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// One accepted connection, from accept() until it is reaped.
struct Conn final : HandshakeMonitor {
  Conn(PeerServerImpl* srv, const asio::ip::address& from, tcp::socket s)
      : server(srv), source(from), source_text(from.to_string()), accepted(Clock::now()),
        progressed_ns(NowNs()), sock(std::make_unique<tcp::socket>(std::move(s))) {}

  // The session thread reports each handshake frame it reads. An atomic, not the
  // server's lock: the report must not wait behind the acceptor, which may be picking
  // a stranger to push out at that very moment.
  void OnFrameRead() override { progressed_ns.store(NowNs(), std::memory_order_relaxed); }
  Status Admit() override;

  PeerServerImpl* const server;
  const asio::ip::address source;    // the peer's address (IPv4-mapped ones as IPv4)
  const std::string source_text;     // for logs (made here, so logging cannot throw later)
  const Clock::time_point accepted;

  // The latest progress: accept, first bytes, each handshake frame read.
  std::atomic<int64_t> progressed_ns;

  // Guarded by the server's mu_.
  Stage stage = Stage::kSilent;
  bool evicted = false;                      // told to go: no longer counts as a stranger
  std::unique_ptr<tcp::socket> sock;         // while kSilent (touched on the accept thread only)
  std::unique_ptr<ReceiveSession> session;   // from kHandshaking on
  std::thread thread;
};

// The two kinds of stranger (peer_server.h, "Admission"); an evicted one is neither.
bool IsSilent(const Conn& c) { return !c.evicted && c.stage == Stage::kSilent; }
bool IsTalking(const Conn& c) { return !c.evicted && c.stage == Stage::kHandshaking; }

// Tells a peer that has not finished its handshake why it is dropped, if the socket
// takes the few bytes at once (never blocks).
void TellBestEffort(int fd, const Error& e) {
  const std::string f = EncodeHandshakeError(e);
  (void)!::send(fd, f.data(), f.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

class PeerServerImpl final : public PeerServer {
 public:
  PeerServerImpl(const PeerServerOptions& opts, ReceiveObserver* observer)
      : opts_(opts), observer_(observer), acceptor_(io_), retry_(io_), sweep_(io_) {}

  ~PeerServerImpl() override {
    // The accept thread owns the acceptor and the silent connections: it closes them,
    // which leaves its loop without work, so run() returns.
    asio::post(io_, [this] {
      {
        std::lock_guard<std::mutex> lk(mu_);
        stopping_ = true;
        for (auto& c : conns_) {
          if (c->stage == Stage::kSilent) CloseSilent(*c);
        }
      }
      boost::system::error_code ec;
      acceptor_.close(ec);
      retry_.cancel();
      sweep_.cancel();
    });
    if (accept_thread_.joinable()) accept_thread_.join();
    std::list<std::shared_ptr<Conn>> conns;
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_ = true;  // also when the thread never ran; Admit refuses from now on
      conns.swap(conns_);
    }
    for (auto& c : conns) {
      if (c->thread.joinable()) c->session->Stop();
    }
    for (auto& c : conns) {
      if (c->thread.joinable()) c->thread.join();
    }
  }

  Status Start() {
    if (opts_.key.empty() && !opts_.insecure) {
      return MakeError(errc::kInvalidArgument, "peer listener needs a pre-shared key (keyfile=) or -o insecure");
    }
    if (opts_.src_dirfd < 0) return MakeError(errc::kInvalidArgument, "peer listener: no served directory");
    if (opts_.max_sessions == 0) return MakeError(errc::kInvalidArgument, "peer listener: max_sessions is 0");
    if (opts_.max_unauthenticated == 0) {
      return MakeError(errc::kInvalidArgument, "peer listener: max_unauthenticated is 0");
    }
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
    if (!ec) {
      // The kernel copies a listener's TOS and priority into the SYN-ACK and into every
      // socket accept() returns.
      if (Status marked = ApplySocketMarking(acceptor_.native_handle(), opts_.marking); !marked.ok()) {
        Error e = marked.error();
        e.message = "listen on " + opts_.listen + ": " + e.message;
        return e;
      }
    }
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
    cfg_.state_dir = opts_.state_dir;
    cfg_.receiving = &receiving_;
    cfg_.handshake_timeout = opts_.handshake_timeout;
    cfg_.idle_takeover = opts_.idle_takeover;
    // Silent connections are timed out by a sweep; a quarter of the timeout is late enough.
    sweep_every_ = std::clamp(std::chrono::duration_cast<milliseconds>(opts_.handshake_timeout / 4), milliseconds(10),
                              milliseconds(250));
    Accept();
    Sweep();
    try {
      accept_thread_ = std::thread([this] { AcceptLoop(); });
    } catch (const std::system_error& e) {
      return MakeError(errc::kResourceExhausted, std::string("peer listener: no thread for the acceptor: ") + e.what());
    }
    spdlog::info("peer server: listening on {} (port {}){}", opts_.listen, port_,
                 opts_.key.empty() ? ", INSECURE: no authentication" : "");
    return OkStatus();
  }

  uint16_t port() const override { return port_; }

  // ---- HandshakeMonitor, for Conn (session threads)

  Status Admit(Conn* c) {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) return MakeError(errc::kPeerUnreachable, "the target daemon is stopping");
    if (c->evicted) {
      return MakeError(errc::kBusy, "dropped by the target to make room for newer unauthenticated connections");
    }
    unsigned sessions = 0;
    for (const auto& o : conns_) sessions += o->stage == Stage::kSession ? 1 : 0;
    if (sessions >= opts_.max_sessions) {
      if (const uint64_t n = busy_log_.Note()) {
        spdlog::warn("peer server: refused {} authenticated peer(s) (latest {}): {} sessions already", n,
                     c->source_text, sessions);
      }
      return MakeError(errc::kBusy, "too many peer sessions on this daemon (" + std::to_string(sessions) +
                                        "); retry later");
    }
    c->stage = Stage::kSession;
    return OkStatus();
  }

 private:
  // ---- accept thread

  // The accept thread's body. Every handler catches its own exceptions; should one
  // still get out of run(), it is logged, the acceptor and the sweep are re-armed if
  // the throw cut their chain, and the loop goes on.
  void AcceptLoop() {
    while (true) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {
        spdlog::error("peer server: acceptor: unexpected exception: {}; carrying on", e.what());
      } catch (...) {
        spdlog::error("peer server: acceptor: unexpected exception; carrying on");
      }
      try {
        if (acceptor_.is_open() && !accept_pending_ && !retry_pending_) RetryAcceptSoon();
        if (acceptor_.is_open() && !sweep_pending_) Sweep();
      } catch (...) {
      }
    }
  }

  // The *_pending_ flags are set after the call that arms the wait: if arming throws,
  // AcceptLoop sees the chain broken. (Asio never runs a handler inside the call.)
  void Accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket sock) {
      accept_pending_ = false;
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (ec) {
        // EMFILE, ENFILE, ENOBUFS, ENOMEM, ...: the connection stays in the kernel's
        // backlog; do not spin on it, try again shortly.
        if (const uint64_t n = accept_log_.Note()) {
          spdlog::warn("peer server: accept failed {} time(s), latest: {}; retrying every {} ms", n, ec.message(),
                       kAcceptBackoff.count());
        }
        RetryAcceptSoon();
        return;
      }
      try {
        OnAccepted(std::move(sock));
      } catch (const std::exception& e) {
        spdlog::error("peer server: dropped a new connection: {}", e.what());
        backoff_until_ = Clock::now() + kAcceptBackoff;
      }
      if (Clock::now() < backoff_until_) {
        RetryAcceptSoon();
      } else {
        Accept();
      }
    });
    accept_pending_ = true;
  }

  void RetryAcceptSoon() {
    retry_.expires_after(kAcceptBackoff);
    retry_.async_wait([this](const boost::system::error_code& e) {
      retry_pending_ = false;
      if (!e && acceptor_.is_open()) Accept();
    });
    retry_pending_ = true;
  }

  void OnAccepted(tcp::socket sock) {
    boost::system::error_code ec;
    const tcp::endpoint ep = sock.remote_endpoint(ec);
    if (ec) return;  // reset before we got to it
    // Inherited from the listener already; set again so that the marking does not rest
    // on that (a no-op when it is already there). The listener took it, so this cannot
    // be refused for lack of privilege.
    (void)ApplySocketMarking(sock.native_handle(), opts_.marking);
    asio::ip::address source = ep.address();
    if (source.is_v6() && source.to_v6().is_v4_mapped()) {
      source = asio::ip::make_address_v4(asio::ip::v4_mapped, source.to_v6());
    }
    std::shared_ptr<Conn> c;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stopping_) return;
      Reap();
      MakeRoom(IsSilent);
      c = std::make_shared<Conn>(this, source, std::move(sock));
      conns_.push_back(c);
    }
    // Its first bytes give it a session; until then it costs no thread. The handler
    // holds the Conn, so it outlives an eviction or reap that closes the socket.
    c->sock->async_wait(tcp::socket::wait_read, [this, c](const boost::system::error_code& e) {
      try {
        OnReadable(c, e);
      } catch (const std::exception& ex) {
        spdlog::error("peer server: connection from {}: {}", c->source_text, ex.what());
      }
    });
  }

  void OnReadable(const std::shared_ptr<Conn>& c, const boost::system::error_code& e) {
    std::lock_guard<std::mutex> lk(mu_);
    if (c->stage != Stage::kSilent) return;  // evicted or timed out meanwhile
    if (e || stopping_) {
      CloseSilent(*c);
      return;
    }
    StartSession(*c);
  }

  // Gives a connection that has sent something its session and thread. Out of
  // descriptors (the session's event loop needs its own) or threads, this connection
  // alone is refused, and accepting pauses briefly.
  void StartSession(Conn& c) {
    // Everything that may throw before the descriptor leaves the socket object (which
    // would close it), nothing that may leak it after.
    MakeRoom(IsTalking);
    // The handshake gets what is left of the connection's time: silence followed by a
    // slow handshake must not add up to more than handshake_timeout.
    SessionConfig cfg = cfg_;
    const auto spent = std::chrono::duration_cast<milliseconds>(Clock::now() - c.accepted);
    cfg.handshake_timeout = std::max(opts_.handshake_timeout - spent, milliseconds(1));
    boost::system::error_code ec;
    const int fd = c.sock->release(ec);
    c.sock.reset();
    c.stage = Stage::kEnded;  // until it has a thread
    if (ec) return;
    try {
      c.session = std::make_unique<ReceiveSession>(fd, cfg, &c);
    } catch (const std::exception& e) {
      // The session did not take the descriptor (its constructor did not finish).
      ResourceFailure(c, fd, "cannot set up a session", e.what());
      ::close(fd);
      return;
    }
    c.stage = Stage::kHandshaking;
    c.progressed_ns.store(NowNs(), std::memory_order_relaxed);  // its first bytes
    try {
      c.thread = std::thread([this, conn = &c] { SessionThread(conn); });
    } catch (const std::system_error& e) {
      ResourceFailure(c, fd, "cannot start a session thread", e.what());
      c.stage = Stage::kEnded;
      c.session.reset();  // closes fd
    }
  }

  void ResourceFailure(const Conn& c, int fd, const char* what, const char* why) {
    if (const uint64_t n = resource_log_.Note()) {
      spdlog::error("peer server: refused {} connection(s) (latest from {}): {}: {}", n, c.source_text, what, why);
    }
    TellBestEffort(fd, MakeError(errc::kResourceExhausted,
                                 std::string("the target daemon ") + what + " (" + why + "); retry later"));
    backoff_until_ = Clock::now() + kAcceptBackoff;
  }

  // Closes a silent connection (accept thread, mu_ held).
  static void CloseSilent(Conn& c) {
    if (c.sock) {
      boost::system::error_code ec;
      c.sock->close(ec);  // its pending wait ends with operation_aborted
      c.sock.reset();
    }
    c.stage = Stage::kEnded;
  }

  // Before a stranger of one kind is added: if max_unauthenticated of that kind are
  // there, pushes one out (peer_server.h, "Admission"): from the source address that
  // holds the most of them, the one that has gone longest without progress.
  void MakeRoom(bool (*kind)(const Conn&)) {
    std::map<asio::ip::address, unsigned> per_source;
    unsigned total = 0;
    for (const auto& c : conns_) {
      if (!kind(*c)) continue;
      ++per_source[c->source];
      ++total;
    }
    if (total < opts_.max_unauthenticated) return;
    Conn* victim = nullptr;
    unsigned victim_source = 0;
    int64_t victim_progress = 0;
    for (const auto& c : conns_) {
      if (!kind(*c)) continue;
      const unsigned n = per_source[c->source];
      const int64_t progress = c->progressed_ns.load(std::memory_order_relaxed);
      if (victim == nullptr || n > victim_source || (n == victim_source && progress < victim_progress)) {
        victim = c.get();
        victim_source = n;
        victim_progress = progress;
      }
    }
    Evict(victim);
  }

  void Evict(Conn* c) {
    if (c == nullptr) return;
    c->evicted = true;
    if (c->stage == Stage::kSilent) {
      CloseSilent(*c);
    } else {
      c->session->Stop();  // its blocking handshake fails at once; the thread then ends
    }
    if (const uint64_t n = evict_log_.Note()) {
      spdlog::warn("peer server: dropped {} unauthenticated connection(s) (latest from {}) to make room for new ones "
                   "(max_unauthenticated {}); a flood of connections that do not authenticate?",
                   n, c->source_text, opts_.max_unauthenticated);
    }
  }

  // Joins and frees the connections that are over (mu_ held). A thread stores kEnded
  // as the last thing it does, so these joins do not wait.
  void Reap() {
    for (auto it = conns_.begin(); it != conns_.end();) {
      if ((*it)->stage == Stage::kEnded) {
        if ((*it)->thread.joinable()) (*it)->thread.join();
        it = conns_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Drops silent connections past the handshake timeout and reaps ended ones, also
  // when no new connection comes to do it.
  void Sweep() {
    sweep_.expires_after(sweep_every_);
    sweep_.async_wait([this](const boost::system::error_code& e) {
      sweep_pending_ = false;
      // Not `e` alone: a wait that had expired before the destructor's cancel() still
      // completes without error, and re-arming then would keep run() from returning.
      if (e || !acceptor_.is_open()) return;
      try {
        std::lock_guard<std::mutex> lk(mu_);
        const auto now = Clock::now();
        for (auto& c : conns_) {
          if (c->stage == Stage::kSilent && now - c->accepted >= opts_.handshake_timeout) CloseSilent(*c);
        }
        Reap();
      } catch (const std::exception& ex) {
        spdlog::error("peer server: sweep: {}", ex.what());
      }
      Sweep();
    });
    sweep_pending_ = true;
  }

  // ---- session threads

  void SessionThread(Conn* c) {
    try {
      c->session->Run();
    } catch (const std::exception& e) {
      spdlog::error("peer server: session with {} failed: {}", c->source_text, e.what());
    } catch (...) {
      spdlog::error("peer server: session with {} failed (unknown exception)", c->source_text);
    }
    std::lock_guard<std::mutex> lk(mu_);
    c->stage = Stage::kEnded;
  }

  const PeerServerOptions opts_;
  ReceiveObserver* const observer_;
  SessionConfig cfg_;
  ReceivingSet receiving_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::steady_timer retry_;
  asio::steady_timer sweep_;
  milliseconds sweep_every_{250};
  std::thread accept_thread_;
  uint16_t port_ = 0;

  // Accept thread only.
  bool accept_pending_ = false, retry_pending_ = false, sweep_pending_ = false;
  Clock::time_point backoff_until_;
  LogThrottle accept_log_, evict_log_, resource_log_;

  std::mutex mu_;
  bool stopping_ = false;
  std::list<std::shared_ptr<Conn>> conns_;  // in accept order
  LogThrottle busy_log_;                    // under mu_
};

Status Conn::Admit() { return server->Admit(this); }

}  // namespace

Result<std::unique_ptr<PeerServer>> PeerServer::Start(const PeerServerOptions& opts, ReceiveObserver* observer) {
  auto s = std::make_unique<PeerServerImpl>(opts, observer);
  Status st = s->Start();
  if (!st.ok()) return st.error();
  return std::unique_ptr<PeerServer>(std::move(s));
}

}  // namespace migratefs::net
