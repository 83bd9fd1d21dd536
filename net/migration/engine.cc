#include "net/migration/engine.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <unistd.h>

#include <cstring>
#include <system_error>
#include <utility>

#include "net/image_name.h"
#include "net/migration/refuse_writes_hook.h"
#include "net/migration/restored_fence.h"
#include "net/migration/src_scan.h"
#include "net/migration/start_guards.h"

namespace migratefs::migration {

namespace {

// N of an id "m<N>" as Start hands them out; 0 for any other id.
uint64_t IdNumber(const std::string& id) {
  if (id.size() < 2 || id.size() >= 20 || id[0] != 'm' || id.find_first_not_of("0123456789", 1) != std::string::npos)
    return 0;
  return std::stoull(id.substr(1));
}

// The marking is the migration's, not the progress's: stamped on what is reported.
Progress WithMarking(Progress p, const Migration& m) {
  p.dscp = m.marking().dscp;
  p.so_priority = m.marking().priority;
  return p;
}
MigrationInfo WithMarking(MigrationInfo info, const Migration& m) {
  info.progress = WithMarking(std::move(info.progress), m);
  return info;
}

// Whether the kernel would take this marking, tried on a throwaway TCP socket, so
// that a start the connection could never honour (a priority above 6 without
// CAP_NET_ADMIN) is refused at once instead of pausing with the reason forever.
Status CheckMarking(const net::SocketMarking& marking) {
  if (marking.empty()) return OkStatus();
  if (marking.dscp && *marking.dscp > net::kMaxDscp) {
    return MakeError(errc::kInvalidArgument, "start: dscp " + std::to_string(*marking.dscp) + " is above 63");
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return OkStatus();  // out of descriptors: CheckDescriptorRoom says so next
  Status applied = net::ApplySocketMarking(fd, marking);
  ::close(fd);
  if (!applied.ok()) {
    return MakeError(errc::kInvalidArgument, "start: the peer connection cannot carry " +
                                                 net::DescribeMarking(marking) + ": " + applied.error().message);
  }
  return OkStatus();
}
}  // namespace

Engine::Engine(MigrationContext ctx) : ctx_(std::move(ctx)) {
  if (!ctx_.completer) {
    own_completer_ = std::make_unique<DelayedCompleter>();
    ctx_.completer = own_completer_.get();
  }
  if (!ctx_.events) {
    own_events_ = std::make_unique<EventBus>();
    ctx_.events = own_events_.get();
  }
  janitor_ = std::thread([this] { JanitorLoop(); });
}

Engine::~Engine() {
  StopProfiles();
  {
    std::lock_guard<std::mutex> lock(mu_);
    janitor_stop_ = true;
  }
  janitor_cv_.notify_all();
  janitor_.join();
  if (resumer_.joinable()) resumer_.join();
  StopAll();
  for (auto& [id, f] : restored_) ::close(f.fd);  // the fences themselves stay marked on disk
}

void Engine::JanitorLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!janitor_stop_) {
    janitor_cv_.wait_for(lock, kJanitorPeriod);
    if (janitor_stop_) break;
    std::vector<std::shared_ptr<Migration>> dead = RetireEndedLocked();
    SaveJournalLocked();  // a migration that failed on its own leaves the journal here
    lock.unlock();
    dead.clear();  // destructors join threads and close descriptors, outside mu_
    lock.lock();
  }
}

std::vector<std::shared_ptr<Migration>> Engine::RetireEndedLocked() {
  std::vector<std::shared_ptr<Migration>> dead;
  const auto now = std::chrono::steady_clock::now();
  for (auto it = migrations_.begin(); it != migrations_.end();) {
    Migration& m = *it->second;
    if (m.HoldsImages() || !m.terminal()) {
      ++it;
      continue;
    }
    // A failed migration stays for kFailedGrace, so that a cancel can still tell the
    // target to remove (or keep) its partial copy; cancelled and released ones go now.
    MigrationInfo info = WithMarking(m.Info(), m);
    if (info.progress.phase == phase::kFailed) {
      auto seen = failed_since_.emplace(it->first, now).first;
      if (now - seen->second < kFailedGrace) {
        ++it;
        continue;
      }
    }
    failed_since_.erase(it->first);
    ended_[it->first] = Ended{std::move(info), now};
    ended_order_.push_back(it->first);
    dead.push_back(std::move(it->second));
    requests_.erase(it->first);
    it = migrations_.erase(it);
  }
  while (!ended_order_.empty() &&
         (ended_order_.size() > kKeepEnded || now - ended_.at(ended_order_.front()).at > kKeepEndedFor)) {
    ended_.erase(ended_order_.front());
    ended_order_.pop_front();
  }
  return dead;
}

void Engine::RetireEnded() {
  std::vector<std::shared_ptr<Migration>> dead;
  {
    std::lock_guard<std::mutex> lock(mu_);
    dead = RetireEndedLocked();
  }
}

std::string Engine::ForgottenOrUnknown(const std::string& id) const {
  // Ids are "m<N>" handed out in order: one below next_id_ existed and was forgotten.
  if (const uint64_t n = IdNumber(id); n != 0 && n < next_id_) {
    return "migration \"" + id + "\" ended and was forgotten (the daemon keeps the last " +
           std::to_string(kKeepEnded) + " ended migrations for " +
           std::to_string(std::chrono::duration_cast<std::chrono::minutes>(kKeepEndedFor).count()) + " min)";
  }
  return "no migration with id \"" + id + "\"";
}

void Engine::StopAll() {
  std::map<std::string, std::shared_ptr<Migration>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.swap(migrations_);
  }
  all.clear();  // each destructor stops its threads and detaches its hooks
}

Result<std::string> Engine::Start(const StartRequest& req) {
  if (req.target.empty()) return MakeError(errc::kBadRequest, "start: \"target\" is required (HOST:PORT)");
  if (req.network_kbps > kMaxKbps || req.disk_kbps > kMaxKbps)
    return MakeError(errc::kInvalidArgument, "start: limits above 100000000 KB/s are refused");
  if (IsOwnAddress(req.target, ctx_.listen)) {
    return MakeError(errc::kTargetIsSelf, "start: target " + req.target +
                                              " is this daemon's own listen address; a migration to itself "
                                              "would write into the image it reads");
  }
  if (Status marking = CheckMarking(ctx_.marking.OverriddenBy(net::SocketMarking{req.dscp, req.so_priority}));
      !marking.ok()) {
    return marking.error();
  }
  if (Status room = CheckDescriptorRoom(); !room.ok()) return room.error();
  std::lock_guard<std::mutex> lock(mu_);
  const std::string id = "m" + std::to_string(next_id_);
  auto started = StartLocked(id, req);
  if (started.ok()) {
    next_id_++;
    SaveJournalLocked();
  }
  return started;
}

Result<std::string> Engine::StartLocked(const std::string& id, const StartRequest& req, bool postcopy) {
  auto created = Migration::Create(id, req, &ctx_);
  if (!created.ok()) return created.error();
  std::shared_ptr<Migration> m = std::move(created.value());
  if (req.copy.hybrid) {
    // The pre-copy set comes from the image's last profile, as predict's rows do.
    std::vector<policy::ImageProfile> profiles;
    for (auto& img : m->images())
      if (auto it = profiles_.find(img->name()); it != profiles_.end()) profiles.push_back(it->second);
    m->set_write_profiles(std::move(profiles));
    JournalDoc record;
    record.next_id = std::max(next_id_, IdNumber(id) + 1);
    record.running.push_back({id, req, 0, true});
    m->set_postcopy_record(EncodeJournal(record));
  }
  if (postcopy) {
    // Its hooks replace the restored ones when it begins, already fenced.
    for (auto it = restored_.begin(); it != restored_.end();) {
      bool mine = false;
      for (auto& img : m->images()) mine |= img->dev() == it->second.dev && img->ino() == it->second.ino;
      if (!mine) {
        ++it;
        continue;
      }
      ::close(it->second.fd);
      it = restored_.erase(it);
    }
    m->ResumePostcopy();
  }
  // One migration per image at a time; a finished (fenced, unreleased) one still counts.
  for (auto& [other_id, fence] : restored_)
    for (auto& mine : m->images())
      if (mine->dev() == fence.dev && mine->ino() == fence.ino)
        return MakeError(errc::kBusy, "image \"" + mine->name() + "\" is fenced by a finish before a restart; release " +
                                          other_id + " first");
  for (auto& [other_id, other] : migrations_) {
    if (!other->HoldsImages()) continue;
    for (auto& mine : m->images())
      for (auto& theirs : other->images())
        if (mine->dev() == theirs->dev() && mine->ino() == theirs->ino())
          return MakeError(errc::kBusy, "image \"" + mine->name() + "\" is already in migration " + other_id);
  }
  if (Status stamped = m->StampIdentities(); !stamped.ok()) return stamped.error();
  try {
    m->Begin();
  } catch (const std::system_error& e) {  // no thread: refuse, keep serving (m detaches as it dies)
    return MakeError(errc::kResourceExhausted, std::string("start: cannot start the migration's thread: ") + e.what());
  }
  migrations_[id] = m;
  requests_[id] = req;
  return id;
}

void Engine::SaveJournalLocked() {
  if (!journal_save_) return;
  JournalDoc doc;
  doc.instance_id = ctx_.instance_id;
  doc.next_id = next_id_;
  for (auto& [id, m] : migrations_) {
    if (m->terminal()) continue;
    auto r = requests_.find(id);
    auto n = resumed_.find(id);
    if (r != requests_.end())
      doc.running.push_back({id, r->second, n == resumed_.end() ? 0u : n->second, m->postcopy()});
  }
  std::string text = EncodeJournal(doc);
  if (text == journal_last_) return;
  journal_save_(text);
  journal_last_ = std::move(text);
}

void Engine::SetJournal(std::function<void(const std::string&)> save) {
  std::lock_guard<std::mutex> lock(mu_);
  journal_save_ = std::move(save);
  journal_last_.clear();
  SaveJournalLocked();
}

void Engine::Resume(JournalDoc doc) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    next_id_ = std::max(next_id_, doc.next_id);
  }
  if (doc.running.empty()) return;
  // Not inline: attaching a hook makes the kernel drop its cached pages of the image
  // (Fs::DropKernelCache), which writes dirty pages back through the FUSE loop, and
  // the loop of a restarted worker starts only after the services. Writes served
  // before the hooks are back are on disk when the block-by-block comparison of the
  // restarted migration reads them (migration_journal.h), and the migration is not
  // complete again before that comparison is done.
  resumer_ = std::thread([this, doc = std::move(doc)] { ResumeAll(doc); });
}

void Engine::ResumeAll(const JournalDoc& doc) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const JournalEntry& e : doc.running) {
    if (migrations_.count(e.id) != 0) continue;
    auto started = StartLocked(e.id, e.request, e.postcopy);
    if (started.ok()) {
      resumed_[e.id] = e.resumed + 1;
      spdlog::warn("migration {} of {} image(s) to {} resumed after a restart", e.id, e.request.images.size(),
                   e.request.target);
      continue;
    }
    spdlog::error("migration {} could not resume after a worker restart: {}", e.id, started.error().message);
    MigrationInfo info;
    info.id = e.id;
    info.images = e.request.images;
    info.target = e.request.target;
    info.progress.phase = phase::kFailed;
    info.progress.pause_reason = "could not resume after a worker restart: " + started.error().message;
    ended_[e.id] = Ended{std::move(info), std::chrono::steady_clock::now()};
    ended_order_.push_back(e.id);
  }
  SaveJournalLocked();
}

Result<std::shared_ptr<Migration>> Engine::Find(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (restored_.count(id)) {
    return MakeError(errc::kWrongState, id + " is a fence restored after a daemon restart: only status and release apply");
  }
  auto it = migrations_.find(id);
  if (it != migrations_.end()) return it->second;
  if (auto e = ended_.find(id); e != ended_.end()) {
    return MakeError(errc::kWrongState, id + " has ended (" + e->second.info.progress.phase +
                                            "): only status and progress queries apply");
  }
  return MakeError(errc::kUnknownId, ForgottenOrUnknown(id));
}

Status Engine::SetNetworkLimit(const std::string& id, uint64_t kbps) {
  if (kbps > kMaxKbps) return MakeError(errc::kInvalidArgument, "kbps above 100000000 is refused");
  Status st = With<Status>(id, [&](Migration& m) { return m.SetNetworkLimit(kbps); });
  if (st.ok()) Journal(id, [&](StartRequest& r) { r.network_kbps = kbps; });
  return st;
}

void Engine::Journal(const std::string& id, const std::function<void(StartRequest&)>& change) {
  std::lock_guard<std::mutex> lock(mu_);
  auto r = requests_.find(id);
  if (r != requests_.end() && change) change(r->second);
  SaveJournalLocked();
}

Status Engine::SetDiskLimit(const std::string& id, uint64_t kbps) {
  if (kbps > kMaxKbps) return MakeError(errc::kInvalidArgument, "kbps above 100000000 is refused");
  Status st = With<Status>(id, [&](Migration& m) { return m.SetDiskLimit(kbps); });
  if (st.ok()) Journal(id, [&](StartRequest& r) { r.disk_kbps = kbps; });
  return st;
}

Status Engine::SetMirrorMode(const std::string& id, const MirrorMode& mode) {
  Status st = With<Status>(id, [&](Migration& m) { return m.SetMirrorMode(mode); });
  if (st.ok()) Journal(id, [&](StartRequest& r) { r.mirror = mode; });
  return st;
}

Result<Progress> Engine::QueryProgress(const std::string& id, RateKind what) {
  if (std::optional<MigrationInfo> ended = EndedInfo(id)) return ended->progress;
  auto p = With<Result<Progress>>(id, [&](Migration& m) { return WithMarking(m.GetProgress(what), m); });
  if (p.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    auto r = resumed_.find(id);
    if (r != resumed_.end()) p.value().resumed = r->second;
  }
  return p;
}

Result<bool> Engine::QueryCompletion(const std::string& id) {
  if (std::optional<MigrationInfo> ended = EndedInfo(id)) return ended->completed;
  return With<Result<bool>>(id, [&](Migration& m) { return m.Completed(); });
}

std::optional<MigrationInfo> Engine::EndedInfo(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto e = ended_.find(id);
  if (e == ended_.end()) return std::nullopt;
  return e->second.info;
}

Status Engine::Finish(const std::string& id) {
  Status st = With<Status>(id, [&](Migration& m) { return m.Finish(); });
  Journal(id, nullptr);  // finished: its fence outlives the daemon without the journal
  return st;
}

Status Engine::Cancel(const std::string& id, bool keep_partial) {
  // Idempotent: an ended migration has nothing left to stop (a failed one is kept for
  // kFailedGrace, and a cancel within it still cleans up the target).
  if (EndedIn(id, phase::kCancelled) || EndedIn(id, phase::kFailed)) return OkStatus();
  Status st = With<Status>(id, [&](Migration& m) { return m.Cancel(keep_partial); });
  RetireEnded();  // its descriptors close now, not at the janitor's next round
  Journal(id, nullptr);
  return st;
}

bool Engine::EndedIn(const std::string& id, const char* phase) {
  std::lock_guard<std::mutex> lock(mu_);
  auto e = ended_.find(id);
  return e != ended_.end() && e->second.info.progress.phase == phase;
}

Result<VerifyReport> Engine::Verify(const std::string& id) {
  return With<Result<VerifyReport>>(id, [&](Migration& m) { return m.Verify(); });
}

Status Engine::Release(const std::string& id) {
  if (std::optional<Status> restored = ReleaseRestored(id)) return *restored;
  if (EndedIn(id, phase::kFinished)) return OkStatus();  // released before: still released
  Status st = With<Status>(id, [&](Migration& m) { return m.Release(); });
  RetireEnded();
  return st;
}

size_t Engine::RestoreFences() {
  if (ctx_.src_dirfd < 0 || !ctx_.hooks) return 0;
  std::lock_guard<std::mutex> lock(mu_);
  return ForEachMarkedFile(ctx_.src_dirfd, kFenceXattr,
                           [&](const std::string& name, const std::string& target, dev_t dev, ino_t ino, int fd) {
                             auto hook = std::make_shared<RefuseWritesHook>(EROFS);
                             ctx_.hooks->Attach(dev, ino, hook);
                             const std::string id = "r" + std::to_string(restored_.size() + 1);
                             restored_[id] =
                                 RestoredFence{name, target, dev, ino, ::fcntl(fd, F_DUPFD_CLOEXEC, 0), hook};
                             spdlog::warn("\"{}\" stays fenced (writes get EROFS): finished towards {} before this "
                                          "restart and never released; release {} lifts it",
                                          name, target, id);
                           });
}

JournalDoc Engine::MarkedPostcopies() const {
  JournalDoc doc;
  if (ctx_.src_dirfd < 0) return doc;
  std::set<std::string> seen;  // a VM's images each carry the same entry
  ForEachMarkedFile(ctx_.src_dirfd, kPostcopyXattr,
                    [&](const std::string& name, const std::string& value, dev_t, ino_t, int) {
                      auto decoded = DecodeJournal(value);
                      if (!decoded.ok() || decoded.value().running.size() != 1) {
                        spdlog::error("\"{}\": unreadable postcopy mark ({}): its push is not resumed; the target's "
                                      "reads of blocks it lacks fail after the postcopy timeout",
                                      name, decoded.ok() ? "not one entry" : decoded.error().message);
                        return;
                      }
                      JournalEntry e = decoded.value().running.front();
                      e.postcopy = true;
                      doc.next_id = std::max(doc.next_id, decoded.value().next_id);
                      if (seen.insert(e.id).second) doc.running.push_back(std::move(e));
                    });
  return doc;
}

std::optional<Status> Engine::ReleaseRestored(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = restored_.find(id);
  if (it == restored_.end()) return std::nullopt;
  const RestoredFence& f = it->second;
  // The mark goes first: if that fails the copy stays fenced, and says so.
  const int err = f.fd < 0 ? EBADF : ClearFence(f.fd);
  if (err != 0) return MakeError(errc::kIo, "release " + id + ": \"" + f.image + "\": " + std::strerror(err));
  ctx_.hooks->Detach(f.dev, f.ino, f.hook.get());
  ::close(f.fd);
  if (ctx_.events) ctx_.events->Publish(Event{id, "released", phase::kFinished, "source copy writable again", NowSeconds()});
  restored_.erase(it);
  return OkStatus();
}

MigrationInfo Engine::InfoOf(const std::string& id, const RestoredFence& f) {
  MigrationInfo info;
  info.id = id;
  info.images = {f.image};
  info.target = f.target;
  info.progress.phase = phase::kFinished;
  info.completed = true;
  return info;
}

std::vector<MigrationInfo> Engine::List() {
  std::vector<std::shared_ptr<Migration>> all;
  std::vector<MigrationInfo> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, m] : migrations_) all.push_back(m);
    for (auto& [id, f] : restored_) out.push_back(InfoOf(id, f));
    for (const std::string& id : ended_order_) out.push_back(ended_.at(id).info);
  }
  for (auto& m : all) out.push_back(WithMarking(m->Info(), *m));
  return out;
}

Result<MigrationInfo> Engine::GetStatus(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = restored_.find(id); it != restored_.end()) return InfoOf(id, it->second);
  }
  if (std::optional<MigrationInfo> ended = EndedInfo(id)) return *ended;
  return With<Result<MigrationInfo>>(id, [&](Migration& m) { return WithMarking(m.Info(), m); });
}

std::unique_ptr<MigrationService::Subscription> Engine::Subscribe(EventSink sink) {
  return ctx_.events->Subscribe(std::move(sink));
}

}  // namespace migratefs::migration
