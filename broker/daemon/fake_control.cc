#include "broker/daemon/fake_control.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "migratefs/control_protocol.h"

namespace migratefs::broker::testing {

using nlohmann::json;

FakeMigrations::FakeMigrations(std::function<double()> now) : now_(std::move(now)) {}

void FakeMigrations::ScriptNext(std::vector<Progress> steps) {
  std::lock_guard lock(mu_);
  next_script_ = std::move(steps);
}

void FakeMigrations::SimulateNext(SimulatedVm vm) {
  std::lock_guard lock(mu_);
  next_sim_ = std::make_unique<SimulatedVm>(vm);
}

void FakeMigrations::SetUnreachable(bool unreachable) {
  std::lock_guard lock(mu_);
  unreachable_ = unreachable;
}

void FakeMigrations::RefuseNextStart(Error error) {
  std::lock_guard lock(mu_);
  refuse_next_ = std::move(error);
}

std::vector<std::string> FakeMigrations::calls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

uint64_t FakeMigrations::network_limit(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = migrations_.find(id);
  return it == migrations_.end() ? 0 : it->second.net_limit;
}

uint64_t FakeMigrations::disk_limit(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = migrations_.find(id);
  return it == migrations_.end() ? 0 : it->second.disk_limit;
}

FakeMigrations::Migration* FakeMigrations::Find(const std::string& id) {
  auto it = migrations_.find(id);
  return it == migrations_.end() ? nullptr : &it->second;
}

Status FakeMigrations::Reachable() const {
  if (unreachable_) return MakeError(errc::kPeerUnreachable, "fake migratefs is down");
  return OkStatus();
}

void FakeMigrations::Record(std::string call) { calls_.push_back(std::move(call)); }

Marking FakeMigrations::start_marking(size_t n) const {
  std::lock_guard lock(mu_);
  return n < start_markings_.size() ? start_markings_[n] : Marking{};
}

Result<std::string> FakeMigrations::Start(const std::vector<std::string>& images,
                                          const std::string& target, const Marking& marking,
                                          uint64_t network_kbps) {
  std::lock_guard lock(mu_);
  if (auto s = Reachable(); !s) return s.error();
  start_markings_.push_back(marking);
  std::string id = "m" + std::to_string(next_id_);
  Record("start " + id + " " + target);
  if (refuse_next_) {
    Error e = *refuse_next_;
    refuse_next_.reset();
    return e;
  }
  ++next_id_;
  Migration& m = migrations_[id];
  m.images = images;
  m.net_limit = network_kbps;
  m.steps = std::move(next_script_);
  next_script_.clear();
  m.sim = std::move(next_sim_);
  m.current.phase = phase::kBulk;
  if (m.sim) {
    m.bytes_left = m.sim->bytes_total;
    m.last_s = now_ ? now_() : 0;
    m.current.bytes_total = static_cast<uint64_t>(m.sim->bytes_total);
    m.current.bytes_left = m.current.bytes_total;
  }
  return id;
}

Status FakeMigrations::SetLimit(const std::string& id, RateKind kind, uint64_t kbps) {
  std::lock_guard lock(mu_);
  if (auto s = Reachable(); !s) return s;
  Migration* m = Find(id);
  if (!m) return MakeError(errc::kUnknownId, "no migration \"" + id + "\"");
  Advance(*m);  // the old limit applied until now
  (kind == RateKind::kNetwork ? m->net_limit : m->disk_limit) = kbps;
  Record(std::string(kind == RateKind::kNetwork ? "set_network_limit " : "set_disk_limit ") + id +
         " " + std::to_string(kbps));
  return OkStatus();
}

void FakeMigrations::Advance(Migration& m) {
  if (m.finished || m.cancelled) return;
  if (!m.sim) return;
  double now = now_ ? now_() : 0;
  double dt = now - m.last_s;
  if (dt <= 0) return;  // rates are measured over the interval since the last look
  m.last_s = now;
  const SimulatedVm& vm = *m.sim;
  double net = vm.link_kbps;
  if (m.net_limit) net = std::min(net, static_cast<double>(m.net_limit));
  double write = vm.write_kbps;
  if (m.disk_limit) write = std::min(write, static_cast<double>(m.disk_limit));
  double dirty = write * vm.dirty_share;
  Progress& p = m.current;
  if (p.phase == phase::kMirror) {
    p.network_kbps = write;
    p.dirty_kbps = 0;
  } else {
    double moved = std::min(m.bytes_left + dirty * 1000 * dt, net * 1000 * dt);
    m.bytes_sent += moved;
    m.bytes_left = std::max(0.0, m.bytes_left + dirty * 1000 * dt - moved);
    p.network_kbps = dt > 0 ? moved / dt / 1000 : 0;
    p.dirty_kbps = dirty;
    if (m.bytes_left <= 0) p.phase = phase::kMirror;
    else if (m.bytes_sent >= vm.bytes_total) p.phase = phase::kDirty;
  }
  p.disk_kbps = write;
  p.bytes_left = static_cast<uint64_t>(m.bytes_left);
  p.bytes_sent = static_cast<uint64_t>(m.bytes_sent);
  double drain = p.network_kbps - p.dirty_kbps;
  p.eta_s = drain > 0 ? m.bytes_left / (drain * 1000) : (m.bytes_left > 0 ? -1 : 0);
}

Result<Progress> FakeMigrations::QueryProgress(const std::string& id, RateKind what) {
  std::lock_guard lock(mu_);
  if (auto s = Reachable(); !s) return s.error();
  Migration* m = Find(id);
  if (!m) return MakeError(errc::kUnknownId, "no migration \"" + id + "\"");
  if (what == RateKind::kNetwork) {
    if (!m->steps.empty()) {
      m->current = m->steps[std::min(m->next_step, m->steps.size() - 1)];
      if (m->next_step < m->steps.size()) ++m->next_step;
    } else {
      Advance(*m);
    }
  }
  Progress p = m->current;
  if (m->finished) p.phase = phase::kFinished;
  if (m->cancelled) p.phase = phase::kCancelled;
  p.kbps = what == RateKind::kNetwork ? p.network_kbps : p.disk_kbps;
  p.network_limit_kbps = m->net_limit;
  p.disk_limit_kbps = m->disk_limit;
  Record(std::string("query_progress ") + id + (what == RateKind::kNetwork ? " network" : " disk"));
  return p;
}

Result<bool> FakeMigrations::QueryCompletion(const std::string& id) {
  std::lock_guard lock(mu_);
  if (auto s = Reachable(); !s) return s.error();
  Migration* m = Find(id);
  if (!m) return MakeError(errc::kUnknownId, "no migration \"" + id + "\"");
  if (m->steps.empty()) Advance(*m);
  Record("query_completion " + id);
  const std::string& ph = m->current.phase;
  return !m->cancelled && (ph == phase::kMirror || m->finished);
}

Status FakeMigrations::Finish(const std::string& id) {
  std::lock_guard lock(mu_);
  if (auto s = Reachable(); !s) return s;
  Migration* m = Find(id);
  if (!m) return MakeError(errc::kUnknownId, "no migration \"" + id + "\"");
  Record("finish " + id);
  if (m->current.phase != phase::kMirror && !m->finished) {
    return MakeError(errc::kWrongState, "finish before completion");
  }
  m->finished = true;
  return OkStatus();
}

Status FakeMigrations::Cancel(const std::string& id) {
  std::lock_guard lock(mu_);
  if (auto s = Reachable(); !s) return s;
  Migration* m = Find(id);
  if (!m) return MakeError(errc::kUnknownId, "no migration \"" + id + "\"");
  Record("cancel " + id);
  m->cancelled = true;
  return OkStatus();
}

namespace {

json Answer(const Status& s, json fields = json::object()) {
  if (!s) return {{"ok", false}, {"error", {{"code", s.error().code}, {"message", s.error().message}}}};
  fields["ok"] = true;
  return fields;
}

}  // namespace

json FakeMigrations::Execute(const json& r) {
  try {
    std::string op = r.at("op");
    if (op == op::kStart) {
      Marking marking;
      if (r.contains("dscp")) {
        if (r["dscp"].is_string()) marking.dscp_name = r["dscp"].get<std::string>();
        else marking.dscp_code = r["dscp"].get<int>();
      }
      if (r.contains("so_priority")) marking.so_priority = r["so_priority"].get<int>();
      auto id = Start(r.at("images").get<std::vector<std::string>>(), r.at("target"), marking,
                      r.value("network_kbps", uint64_t(0)));
      return id ? Answer(OkStatus(), {{"id", id.value()}}) : Answer(id.error());
    }
    if (op == op::kSetNetworkLimit || op == op::kSetDiskLimit) {
      return Answer(SetLimit(r.at("id"), op == op::kSetDiskLimit ? RateKind::kDisk : RateKind::kNetwork,
                             r.at("kbps").get<uint64_t>()));
    }
    if (op == op::kQueryProgress) {
      auto p = QueryProgress(r.at("id"), r.value("what", "network") == "disk" ? RateKind::kDisk
                                                                              : RateKind::kNetwork);
      if (!p) return Answer(p.error());
      const Progress& v = p.value();
      return Answer(OkStatus(), {{"phase", v.phase}, {"pause_reason", v.pause_reason},
                                 {"kbps", v.kbps}, {"bytes_total", v.bytes_total},
                                 {"bytes_sent", v.bytes_sent}, {"bytes_left", v.bytes_left},
                                 {"blocks_left", v.blocks_left}, {"dirty_blocks", v.dirty_blocks},
                                 {"dirty_kbps", v.dirty_kbps}, {"network_kbps", v.network_kbps},
                                 {"disk_kbps", v.disk_kbps}, {"eta_s", v.eta_s},
                                 {"network_limit_kbps", v.network_limit_kbps},
                                 {"disk_limit_kbps", v.disk_limit_kbps}});
    }
    if (op == op::kQueryCompletion) {
      auto c = QueryCompletion(r.at("id"));
      return c ? Answer(OkStatus(), {{"completed", c.value()}}) : Answer(c.error());
    }
    if (op == op::kFinish) return Answer(Finish(r.at("id")));
    if (op == op::kCancel) return Answer(Cancel(r.at("id")));
    return Answer(MakeError(errc::kUnknownOp, "fake: unknown op " + op));
  } catch (const json::exception& e) {
    return Answer(MakeError(errc::kBadRequest, e.what()));
  }
}

Result<std::unique_ptr<FakeControlServer>> FakeControlServer::Start(const std::string& path,
                                                                    FakeMigrations* migrations) {
  auto fd = ListenUnix(path);
  if (!fd) return fd.error();
  std::unique_ptr<FakeControlServer> server(new FakeControlServer());
  server->path_ = path;
  server->migrations_ = migrations;
  server->listen_ = std::move(fd.value());
  server->thread_ = std::thread([s = server.get()] { s->Loop(); });
  return server;
}

FakeControlServer::~FakeControlServer() {
  stop_ = true;
  thread_.join();
  ::unlink(path_.c_str());
}

std::vector<std::string> FakeControlServer::lines() const {
  std::lock_guard lock(mu_);
  return lines_;
}

void FakeControlServer::Loop() {
  while (!stop_) {
    pollfd p{listen_.get(), POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    Fd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd.valid()) continue;
    LineConn conn(std::move(fd));
    for (;;) {
      auto line = conn.ReadLine(Millis(500));
      if (!line || !line.value()) break;
      {
        std::lock_guard lock(mu_);
        lines_.push_back(*line.value());
      }
      json request = json::parse(*line.value(), nullptr, false);
      json answer = request.is_object() ? migrations_->Execute(request)
                                        : json{{"ok", false},
                                               {"error", {{"code", "bad_request"}, {"message", "malformed"}}}};
      if (!conn.WriteLine(answer.dump(), Millis(500))) break;
    }
  }
}

}  // namespace migratefs::broker::testing
