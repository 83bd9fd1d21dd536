#include "net/control/metrics_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio.hpp>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <functional>
#include <thread>

namespace migratefs::control {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

// --- rendering ---

namespace {

// Label values escape backslash, double quote and newline (exposition format rules).
std::string LabelValue(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[64];
  snprintf(buffer, sizeof(buffer), "%.17g", value);
  return buffer;
}

class Exposition {
 public:
  // Starts a metric family; the samples that follow belong to it.
  void Family(const char* name, const char* type, const char* help) {
    name_ = name;
    text_ += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  void Sample(const std::string& labels, double value) {
    text_ += name_ + "{" + labels + "} " + Number(value) + "\n";
  }
  std::string Take() { return std::move(text_); }

 private:
  std::string name_;
  std::string text_;
};

std::string IdLabel(const MigrationInfo& m) { return "id=\"" + LabelValue(m.id) + "\""; }

}  // namespace

std::string RenderMetrics(const std::vector<MigrationInfo>& migrations) {
  Exposition out;
  out.Family("migratefs_migration_info", "gauge", "A migration of this daemon (value 1).");
  for (const auto& m : migrations) {
    std::string images;
    for (const auto& image : m.images) images += (images.empty() ? "" : ",") + image;
    out.Sample(IdLabel(m) + ",target=\"" + LabelValue(m.target) + "\",images=\"" +
                   LabelValue(images) + "\"",
               1);
  }

  static const char* const kPhases[] = {phase::kConnecting, phase::kBulk,     phase::kDirty,
                                        phase::kMirror,     phase::kPaused,   phase::kPostcopy,
                                        phase::kFinished,   phase::kCancelled, phase::kFailed};
  out.Family("migratefs_phase", "gauge", "1 for the migration's current phase, 0 otherwise.");
  for (const auto& m : migrations) {
    for (const char* p : kPhases) {
      out.Sample(IdLabel(m) + ",phase=\"" + p + "\"", m.progress.phase == p ? 1 : 0);
    }
  }

  struct Gauge {
    const char* name;
    const char* type;
    const char* help;
    std::function<double(const MigrationInfo&)> value;
  };
  const Gauge gauges[] = {
      {"migratefs_bytes_sent_total", "counter", "Block data sent in phases 1-2, resends included.",
       [](const MigrationInfo& m) { return double(m.progress.bytes_sent); }},
      {"migratefs_bytes_mirrored_total", "counter", "The VM's writes forwarded in phase 3, bytes.",
       [](const MigrationInfo& m) { return double(m.progress.bytes_mirrored); }},
      {"migratefs_bytes_total", "gauge", "Sum of the image sizes in bytes.",
       [](const MigrationInfo& m) { return double(m.progress.bytes_total); }},
      {"migratefs_bytes_left", "gauge", "Bytes still to send (dirty blocks).",
       [](const MigrationInfo& m) { return double(m.progress.bytes_left); }},
      {"migratefs_dirty_blocks", "gauge", "Blocks marked dirty.",
       [](const MigrationInfo& m) { return double(m.progress.dirty_blocks); }},
      {"migratefs_dirty_kbps", "gauge", "Rate at which the VM dirties clean blocks, KB/s.",
       [](const MigrationInfo& m) { return m.progress.dirty_kbps; }},
      {"migratefs_network_kbps", "gauge", "Sending rate, KB/s (1 KB = 1000 bytes).",
       [](const MigrationInfo& m) { return m.progress.network_kbps; }},
      {"migratefs_disk_kbps", "gauge", "The VM's write rate to the images, KB/s.",
       [](const MigrationInfo& m) { return m.progress.disk_kbps; }},
      {"migratefs_eta_seconds", "gauge", "Estimated time to completion; -1 = not converging.",
       [](const MigrationInfo& m) { return m.progress.eta_s; }},
      {"migratefs_network_limit_kbps", "gauge", "Network limit, KB/s; 0 = none.",
       [](const MigrationInfo& m) { return double(m.progress.network_limit_kbps); }},
      {"migratefs_disk_limit_kbps", "gauge", "Disk-write limit, KB/s; 0 = none.",
       [](const MigrationInfo& m) { return double(m.progress.disk_limit_kbps); }},
      {"migratefs_mirror_backlog_bytes", "gauge", "Mirrored bytes queued for the target, not yet acknowledged.",
       [](const MigrationInfo& m) { return double(m.progress.backlog_bytes); }},
      {"migratefs_mirror_synchronous_seconds", "counter",
       "Time an asynchronous mirror made writes wait (backlog over its high mark).",
       [](const MigrationInfo& m) { return m.progress.mirror_sync_s; }},
      {"migratefs_completed", "gauge",
       "1 once every block is on the target (phase 3); hybrid: once precopy_pct of them are.",
       [](const MigrationInfo& m) { return m.completed ? 1.0 : 0.0; }},
      {"migratefs_hybrid", "gauge", "1 for a hybrid copy (pre-copy share, then postcopy), 0 for pre-copy.",
       [](const MigrationInfo& m) { return m.progress.mode == "hybrid" ? 1.0 : 0.0; }},
      {"migratefs_blocks_remote", "gauge", "Hybrid: data blocks the target still lacks.",
       [](const MigrationInfo& m) { return double(m.progress.blocks_remote); }},
      {"migratefs_bytes_pulled_total", "counter", "Hybrid postcopy: bytes pushed to the target in the background.",
       [](const MigrationInfo& m) { return double(m.progress.bytes_pulled); }},
      {"migratefs_bytes_fetched_on_demand_total", "counter",
       "Hybrid postcopy: bytes the target's reads and writes fetched on demand.",
       [](const MigrationInfo& m) { return double(m.progress.bytes_fetched_on_demand); }},
  };
  for (const Gauge& gauge : gauges) {
    out.Family(gauge.name, gauge.type, gauge.help);
    for (const auto& m : migrations) out.Sample(IdLabel(m), gauge.value(m));
  }
  return out.Take();
}

// --- the HTTP side ---

namespace {

constexpr size_t kMaxHeadBytes = 8 * 1024;
constexpr auto kRequestTimeout = std::chrono::seconds(5);
constexpr int kMaxConnections = 16;

std::string HttpResponse(const char* status, const std::string& content_type,
                         const std::string& body) {
  return std::string("HTTP/1.0 ") + status + "\r\nContent-Type: " + content_type +
         "\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

// One connection: read the head, answer, close.
class MetricsConnection : public std::enable_shared_from_this<MetricsConnection> {
 public:
  MetricsConnection(tcp::socket socket, MigrationService& service, std::atomic<int>& open)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        head_(kMaxHeadBytes),
        service_(service),
        open_(open) {
    ++open_;
  }
  ~MetricsConnection() { --open_; }

  void Begin() {
    timer_.expires_after(kRequestTimeout);
    timer_.async_wait([self = shared_from_this()](const error_code& ec) {
      if (!ec) self->Close();
    });
    asio::async_read_until(socket_, head_, "\r\n\r\n",
                           [self = shared_from_this()](const error_code& ec, size_t) {
                             if (ec) {
                               self->Close();
                               return;
                             }
                             self->Answer();
                           });
  }

  void Close() {
    error_code ignored;
    socket_.close(ignored);
    timer_.cancel();
  }

 private:
  void Answer() {
    std::istream head(&head_);
    std::string method, target;
    head >> method >> target;
    std::string path = target.substr(0, target.find('?'));
    if (method == "GET" && path == "/metrics") {
      std::string body;
      try {
        body = RenderMetrics(service_.List());
      } catch (const std::exception& e) {
        response_ = HttpResponse("500 Internal Server Error", "text/plain", e.what());
      }
      if (response_.empty()) {
        response_ = HttpResponse("200 OK", "text/plain; version=0.0.4; charset=utf-8", body);
      }
    } else {
      response_ = HttpResponse("404 Not Found", "text/plain", "only GET /metrics here\n");
    }
    asio::async_write(socket_, asio::buffer(response_),
                      [self = shared_from_this()](const error_code&, size_t) {
                        error_code ignored;
                        self->socket_.shutdown(tcp::socket::shutdown_both, ignored);
                        self->Close();
                      });
  }

  tcp::socket socket_;
  asio::steady_timer timer_;
  asio::streambuf head_;
  std::string response_;
  MigrationService& service_;
  std::atomic<int>& open_;
};

}  // namespace

class MetricsServer::Impl {
 public:
  Impl(MigrationService& service) : service_(service), acceptor_(io_) {}
  ~Impl() { Stop(); }

  Status Listen(const HostPort& address) {
    error_code ec;
    tcp::resolver resolver(io_);
    auto endpoints = resolver.resolve(address.host, std::to_string(address.port),
                                      tcp::resolver::numeric_service, ec);
    if (ec || endpoints.empty()) {
      return MakeError(errc::kInvalidArgument,
                       "metrics: cannot resolve " + address.host + ": " + ec.message());
    }
    tcp::endpoint endpoint = *endpoints.begin();
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return MakeError(errc::kIo, "metrics: cannot listen on " + address.host + ":" +
                                      std::to_string(address.port) + ": " + ec.message());
    }
    port_ = acceptor_.local_endpoint().port();
    Accept();
    thread_ = std::thread([this] { io_.run(); });
    return OkStatus();
  }

  void Stop() {
    if (stopped_.exchange(true)) return;
    if (thread_.joinable()) {
      io_.stop();  // pending connections are dropped with the io_context
      thread_.join();
    }
    error_code ignored;
    acceptor_.close(ignored);  // the I/O thread is gone: safe from here
  }

  uint16_t port() const { return port_; }

 private:
  void Accept() {
    acceptor_.async_accept([this](const error_code& ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        if (open_ >= kMaxConnections) {
          error_code ignored;
          socket.close(ignored);
        } else {
          std::make_shared<MetricsConnection>(std::move(socket), service_, open_)->Begin();
        }
      }
      Accept();
    });
  }

  MigrationService& service_;
  std::atomic<int> open_{0};
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
  uint16_t port_ = 0;
};

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& host_port,
                                                            MigrationService* service) {
  Result<HostPort> address = SplitHostPort(host_port);
  if (!address) return address.error();
  return Start(address.value(), service);
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const HostPort& address,
                                                            MigrationService* service) {
  if (service == nullptr) return MakeError(errc::kInternal, "MetricsServer needs a service");
  auto impl = std::make_unique<Impl>(*service);
  if (Status listening = impl->Listen(address); !listening) return listening.error();
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MetricsServer::~MetricsServer() { Stop(); }
void MetricsServer::Stop() { impl_->Stop(); }
uint16_t MetricsServer::port() const { return impl_->port(); }

}  // namespace migratefs::control
