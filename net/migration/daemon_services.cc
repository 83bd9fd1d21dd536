// StartServices: the migration side of the daemon (see include/migratefs/services.h).
#include <algorithm>

#include "migratefs/services.h"

#include <spdlog/spdlog.h>

#include "net/control/control_server.h"
#include "net/control/metrics_server.h"
#include "migratefs/wire.h"
#include "net/peer/handshake.h"
#include "net/image_identity.h"
#include "net/migration/engine.h"
#include "net/migration/receive_guard.h"
#include "net/migration/start_guards.h"
#include "net/peer/peer_client.h"
#include "net/peer/peer_server.h"

namespace migratefs {
namespace {

class DaemonServices : public Services {
 public:
  ~DaemonServices() override { Stop(); }

  void Stop() override {
    // Outside in: no new requests or peers, then the migrations themselves.
    if (metrics) metrics->Stop();
    metrics.reset();
    if (engine) engine->StopProfiles();  // a profile may block for an hour: the control server waits for it
    if (control) control->Stop();
    control.reset();
    peers.reset();
    if (engine) engine->StopAll();
    engine.reset();
  }

  std::unique_ptr<migration::Engine> engine;
  std::unique_ptr<migration::ReceiveGuard> guard;
  std::unique_ptr<net::PeerServer> peers;
  std::unique_ptr<control::ControlServer> control;
  std::unique_ptr<control::MetricsServer> metrics;
};

}  // namespace

Result<std::unique_ptr<Services>> StartServices(const MountOptions& opts, int src_dirfd, HookRegistry& hooks,
                                               RestartJournal* journal) {
  auto services = std::make_unique<DaemonServices>();
  std::string key;
  if (!opts.keyfile.empty()) {
    auto loaded = net::LoadKeyFile(opts.keyfile);
    if (!loaded.ok()) return loaded.error();
    key = loaded.value();
  }

  // Every migration and peer session costs descriptors; running out must mean a refused
  // request, never a daemon (and its mounts) gone. systemd's default soft limit of 1024
  // is far below the usual hard limit.
  spdlog::info("file descriptor limit: {}", migration::RaiseDescriptorLimit());
  // What a dead worker left (migration_journal.h): its migrations start again, and
  // its instance id stays this daemon's.
  migration::JournalDoc resumed;
  if (journal != nullptr) {
    auto doc = migration::DecodeJournal(journal->Load());
    if (doc.ok()) {
      resumed = std::move(doc.value());
    } else {
      spdlog::error("{}: migrations of the previous worker are not resumed", doc.error().message);
    }
  }
  // Random per daemon (kept across worker restarts): a target that sees it in an
  // OpenImage knows the start points at this very daemon (target_is_self).
  const std::string instance_id =
      resumed.instance_id.size() == wire::kInstanceIdSize ? resumed.instance_id : net::RandomBytes(wire::kInstanceIdSize);

  migration::MigrationContext ctx;
  ctx.hooks = &hooks;
  ctx.src_dirfd = src_dirfd;
  ctx.block_size = opts.block_size;
  ctx.key = key;
  ctx.instance_id = instance_id;
  ctx.listen = opts.listen;
  ctx.marking = net::SocketMarking{opts.dscp, opts.so_priority};
  ctx.mirror_coalesce = std::chrono::microseconds(opts.mirror_coalesce_us);
  ctx.sender_threads = opts.senders;
  ctx.mirror_batch_after = opts.mirror_batch_after;
  ctx.mirror_batch_wait = std::chrono::microseconds(opts.mirror_batch_wait_us);
  if (!ctx.marking.empty()) spdlog::info("peer connections marked: {}", net::DescribeMarking(ctx.marking));
  ctx.connect = [](const net::PeerClientOptions& o) -> Result<std::unique_ptr<net::PeerClient>> {
    try {
      return net::PeerClient::Connect(o);
    } catch (const std::exception& e) {  // e.g. EMFILE creating the I/O thread's eventfd
      return MakeError(errc::kResourceExhausted, std::string("connecting to ") + o.target + ": " + e.what());
    }
  };
  services->engine = std::make_unique<migration::Engine>(std::move(ctx));
  services->engine->RestoreFences();
  // A full restart has no memfd journal: postcopy pushes come back from the marks on
  // their source copies (a new worker has both; its journal wins).
  migration::JournalDoc marked = services->engine->MarkedPostcopies();
  for (migration::JournalEntry& e : marked.running) {
    const bool known = std::any_of(resumed.running.begin(), resumed.running.end(),
                                   [&](const migration::JournalEntry& r) { return r.id == e.id; });
    if (known) continue;
    spdlog::warn("migration {} was in postcopy towards {} when this daemon stopped: resuming its push", e.id,
                 e.request.target);
    resumed.running.push_back(std::move(e));
  }
  resumed.next_id = std::max(resumed.next_id, marked.next_id);
  if (journal != nullptr) {
    services->engine->SetJournal([journal](const std::string& doc) {
      if (!journal->Save(doc)) spdlog::error("restart journal full: a worker restart would not resume migrations");
    });
  }
  services->engine->Resume(std::move(resumed));

  if (!opts.listen.empty()) {
    services->guard = std::make_unique<migration::ReceiveGuard>(hooks);
    services->engine->SetIncoming([guard = services->guard.get()] { return guard->Incoming(); });
    if (size_t n = migration::GuardPartialCopies(src_dirfd, *services->guard, opts.state_dir); n > 0) {
      spdlog::info("{} partial cop{} from before a restart refuse local writers until their sources return", n,
                   n == 1 ? "y" : "ies");
    }
    net::PeerServerOptions po;
    po.listen = opts.listen;
    po.key = key;
    po.insecure = opts.insecure;
    po.src_dirfd = src_dirfd;
    po.instance_id = instance_id;
    po.state_dir = opts.state_dir;
    po.marking = net::SocketMarking{opts.dscp, opts.so_priority};
    auto server = net::PeerServer::Start(po, services->guard.get());
    if (!server.ok()) return server.error();
    services->peers = std::move(server.value());
    spdlog::info("accepting peers on {}", opts.listen);
  }
  if (!opts.control.empty()) {
    auto server = control::ControlServer::Start(opts.control, services->engine.get());
    if (!server.ok()) return server.error();
    services->control = std::move(server.value());
    spdlog::info("control socket at {}", opts.control);
  }
  if (!opts.metrics.empty()) {
    auto server = control::MetricsServer::Start(opts.metrics, services->engine.get());
    if (!server.ok()) return server.error();
    services->metrics = std::move(server.value());
    spdlog::info("metrics at http://{}/metrics", opts.metrics);
  }
  return std::unique_ptr<Services>(std::move(services));
}

}  // namespace migratefs
