#include "broker/daemon/broker_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <spdlog/spdlog.h>

namespace migratefs::broker {

namespace {

using nlohmann::json;

json ErrorAnswer(const Error& e) {
  return {{"ok", false}, {"error", {{"code", e.code}, {"message", e.message}}}};
}
json ErrorAnswer(const char* code, const std::string& message) {
  return ErrorAnswer(MakeError(code, message));
}

Result<std::string> StringField(const json& body, const char* key) {
  if (!body.contains(key) || !body[key].is_string() || body[key].get_ref<const std::string&>().empty()) {
    return MakeError(errc::kBadRequest, std::string("field \"") + key + "\" must be a non-empty string");
  }
  return body[key].get<std::string>();
}

json SlaFailure(Broker& broker, const json& body, double now_s) {
  auto link = StringField(body, "link");
  if (!link) return ErrorAnswer(link.error());
  double until = 0;
  if (body.contains("until") && body["until"].is_number()) {
    until = body["until"].get<double>();
  } else if (body.contains("for_s") && body["for_s"].is_number()) {
    until = now_s + body["for_s"].get<double>();
  } else {
    return ErrorAnswer(errc::kBadRequest,
                       "field \"until\" (seconds since the epoch) or \"for_s\" (seconds) must be a number");
  }
  if (!std::isfinite(until)) return ErrorAnswer(errc::kInvalidArgument, "field \"until\" must be finite");
  auto s = broker.ReportSlaFailure(link.value(), until);
  return s ? json{{"ok", true}} : ErrorAnswer(s.error());
}

json Release(Broker& broker, const json& body, const std::string& from) {
  std::vector<std::string> sections;
  if (body.contains("sections")) {
    if (!body["sections"].is_array()) {
      return ErrorAnswer(errc::kBadRequest, "field \"sections\" must be an array of section names");
    }
    for (const json& s : body["sections"]) {
      if (!s.is_string()) return ErrorAnswer(errc::kBadRequest, "field \"sections\" must hold strings");
      sections.push_back(s);
    }
  }
  broker.ReceiveRelease(from.empty() ? "local" : from, sections, body.value("task", ""));
  return {{"ok", true}};
}

json RateReport(Broker& broker, const json& body, const std::string& from) {
  auto section = StringField(body, "section");
  if (!section) return ErrorAnswer(section.error());
  if (from.empty()) return ErrorAnswer(errc::kBadRequest, "rate_report must come from a broker (authenticated)");
  if (!body.contains("tasks") || !body["tasks"].is_array()) {
    return ErrorAnswer(errc::kBadRequest, "field \"tasks\" must be an array");
  }
  std::vector<policy::SharedTask> tasks;
  for (const json& t : body["tasks"]) {
    auto number = [&](const char* key) {
      return t.is_object() && t.contains(key) && t[key].is_number() ? t[key].get<double>() : -1.0;
    };
    policy::SharedTask task;
    task.vm = t.is_object() ? t.value("vm", "") : "";
    task.bytes_left = number("bytes_left");
    task.dirty_bps = number("dirty_kbps") * 1000;
    task.net_bps = number("net_kbps") * 1000;
    task.in_danger = t.is_object() && t.value("in_danger", false);
    if (task.vm.empty() || task.bytes_left < 0 || task.dirty_bps < 0 || task.net_bps < 0) {
      return ErrorAnswer(errc::kBadRequest,
                         "field \"tasks\": each needs vm, bytes_left, dirty_kbps, net_kbps (numbers >= 0)");
    }
    if (t.contains("ceiling_kbps")) {  // absent: no class ceiling
      task.ceiling_bps = number("ceiling_kbps") * 1000;
      if (task.ceiling_bps < 0)
        return ErrorAnswer(errc::kBadRequest, "field \"tasks\": ceiling_kbps must be a number >= 0");
    }
    tasks.push_back(task);
  }
  broker.ReceiveRateReport(from, section.value(), std::move(tasks));
  return {{"ok", true}};
}

}  // namespace

json HandleRequest(Broker& broker, const json& body, const std::string& from, double now_s) {
  if (!body.is_object()) return ErrorAnswer(errc::kBadRequest, "request must be a JSON object");
  auto op = StringField(body, "op");
  if (!op) return ErrorAnswer(op.error());
  const std::string& name = op.value();
  if (name == "submit") {
    if (!body.contains("task")) return ErrorAnswer(errc::kBadRequest, "missing field \"task\"");
    auto spec = TaskSpecFromJson(body["task"]);
    if (!spec) return ErrorAnswer(spec.error());
    auto id = broker.Submit(spec.value());
    if (!id) return ErrorAnswer(id.error());
    nlohmann::json answer = {{"ok", true}, {"vm", spec.value().vm}, {"id", id.value()}};
    if (id.value().empty()) answer["queued"] = true;  // max_parallel reached: starts later
    return answer;
  }
  if (name == "task_status" || name == "cancel") {
    auto vm = StringField(body, "vm");
    if (!vm) return ErrorAnswer(vm.error());
    if (name == "cancel") {
      auto s = broker.Cancel(vm.value());
      return s ? json{{"ok", true}} : ErrorAnswer(s.error());
    }
    auto report = broker.TaskReport(vm.value());
    if (!report) return ErrorAnswer(report.error());
    return {{"ok", true}, {"task", report.value()}};
  }
  if (name == "status") {
    json answer = broker.StatusReport();
    answer["ok"] = true;
    return answer;
  }
  if (name == "sla_failure") return SlaFailure(broker, body, now_s);
  if (name == kReleaseOp) return Release(broker, body, from);
  if (name == kRateReportOp) return RateReport(broker, body, from);
  return ErrorAnswer(errc::kUnknownOp, "unknown op \"" + name.substr(0, 64) +
                                           "\" (submit, task_status, cancel, status, "
                                           "sla_failure, release_bandwidth, rate_report)");
}

BrokerServer::BrokerServer(const BrokerConfig& config, Broker* broker, MessageVerifier* verifier,
                           std::function<double()> now)
    : config_(config), broker_(broker), verifier_(verifier), now_(std::move(now)) {}

Result<std::unique_ptr<BrokerServer>> BrokerServer::Start(const BrokerConfig& config,
                                                          Broker* broker,
                                                          MessageVerifier* verifier,
                                                          std::function<double()> now) {
  std::unique_ptr<BrokerServer> server(new BrokerServer(config, broker, verifier, std::move(now)));
  if (!config.listen.empty()) {
    auto fd = ListenTcp(config.listen);
    if (!fd) return fd.error();
    server->tcp_ = std::move(fd.value());
    server->tcp_port_ = BoundPort(server->tcp_.get());
  }
  if (!config.socket.empty()) {
    auto fd = ListenUnix(config.socket);
    if (!fd) return fd.error();
    server->unix_ = std::move(fd.value());
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return MakeError(errc::kIo, "pipe failed");
  server->wake_read_ = Fd(pipe_fds[0]);
  server->wake_write_ = Fd(pipe_fds[1]);
  server->acceptor_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return server;
}

BrokerServer::~BrokerServer() { Stop(); }

int BrokerServer::tcp_port() const { return tcp_port_; }

void BrokerServer::Stop() {
  if (stopping_.exchange(true)) return;
  char byte = 1;
  (void)!::write(wake_write_.get(), &byte, 1);
  if (acceptor_.joinable()) acceptor_.join();
  tcp_.reset();  // new connections are refused from now on, not left in the backlog
  std::unique_lock lock(mu_);
  for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
  all_closed_.wait(lock, [this] { return open_fds_.empty(); });
  if (!config_.socket.empty() && unix_.valid()) ::unlink(config_.socket.c_str());
  unix_.reset();
}

void BrokerServer::AcceptLoop() {
  while (!stopping_) {
    pollfd fds[3] = {{wake_read_.get(), POLLIN, 0}, {tcp_.get(), POLLIN, 0}, {unix_.get(), POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) continue;
    if (fds[0].revents) return;
    for (int i = 1; i < 3; ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      Fd conn(::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn.valid()) continue;
      std::lock_guard lock(mu_);
      if (open_fds_.size() >= kMaxConnections) {
        LineConn(std::move(conn))
            .WriteLine(ErrorAnswer(errc::kBusy, "too many connections").dump(), Millis(100));
        continue;
      }
      open_fds_.insert(conn.get());
      bool authenticated_only = (i == 1);
      std::thread([this, c = std::move(conn), authenticated_only]() mutable {
        int raw = c.get();
        Serve(std::move(c), authenticated_only);
        std::lock_guard lock(mu_);
        open_fds_.erase(raw);
        all_closed_.notify_all();
      }).detach();
    }
  }
}

void BrokerServer::Serve(Fd fd, bool authenticated_only) {
  LineConn conn(std::move(fd));
  while (!stopping_) {
    auto line = conn.ReadLine(kIdleTimeout, 1 << 20);
    if (!line || !line.value()) return;
    std::string answer = Answer(*line.value(), authenticated_only);
    if (!conn.WriteLine(answer, Millis(5000))) return;
  }
}

std::string BrokerServer::Answer(const std::string& line, bool authenticated_only) {
  double now = now_();
  json request = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) return ErrorAnswer(errc::kBadRequest, "malformed JSON").dump();
  std::string from;
  if (request.is_object() && request.contains("mac")) {
    auto body = verifier_->OpenParsed(request, now);
    if (!body) {
      spdlog::warn("rejected message: {}", body.error().message);
      return ErrorAnswer(body.error()).dump();
    }
    from = body.value()["from"];
    request = std::move(body.value());
  } else if (authenticated_only) {
    spdlog::warn("rejected unauthenticated request on {}", config_.listen);
    return ErrorAnswer(errc::kAuthFailed,
                       "this socket takes authenticated envelopes {\"body\":...,\"mac\":...} only")
        .dump();
  }
  try {
    return HandleRequest(*broker_, request, from, now).dump();
  } catch (const std::exception& e) {
    return ErrorAnswer(errc::kBadRequest, e.what()).dump();
  }
}

}  // namespace migratefs::broker
