#include "fs/resend_log.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <string>

#include <spdlog/spdlog.h>

#include "fs/fs.h"
#include "fs/request_id.h"

namespace migratefs::fs {
namespace {

uint64_t MonotonicSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec);
}

struct Identity {
  uint64_t dev = 0, ino = 0;  // 0, 0: the name is absent
  bool present() const { return ino != 0; }
  bool operator==(const Identity& o) const { return dev == o.dev && ino == o.ino; }
};

Identity IdentityOf(int dir, const char* name) {
  struct stat st;
  if (dir < 0 || name == nullptr || fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return {};
  return {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

// The test seam described in the header.
void MaybeKillForTest(const char* what) {
  static const char* path = std::getenv("MIGRATEFS_FAULT_KILL_AFTER");
  if (path == nullptr || *path == '\0') return;
  std::ifstream in(path);
  std::string op;
  if (!(in >> op) || op != what) return;
  if (unlink(path) != 0) return;  // another thread took it
  raise(SIGKILL);
}

}  // namespace

ResendLog::ResendLog(ResendRecord* records, uint32_t worker)
    : records_(records), worker_(worker), started_s_(MonotonicSeconds()) {}

ResendRecord* ResendLog::Find(uint64_t id) {
  std::lock_guard<std::mutex> l(mu_);
  for (uint32_t i = 0; i < kResendRecords; i++) {
    ResendRecord& r = records_[i];
    if (r.unique.load() == id && r.state.load() != 0) {
      r.worker = worker_;  // ours now: not stale for whoever scans next
      return &r;
    }
  }
  return nullptr;
}

ResendRecord* ResendLog::Claim(uint64_t id) {
  std::lock_guard<std::mutex> l(mu_);
  const bool old_are_stale = MonotonicSeconds() - started_s_ >= kStaleAfterSeconds;
  for (uint32_t i = 0; i < kResendRecords; i++) {
    ResendRecord& r = records_[i];
    if (r.unique.load() != 0 && !(old_are_stale && r.worker != worker_)) continue;
    r.state.store(0);
    r.unique.store(id);
    r.worker = worker_;
    r.claimed_s = MonotonicSeconds();
    return &r;
  }
  if (!warned_full_) {
    warned_full_ = true;
    spdlog::warn("all {} resend records are in use: namespace ops run unrecorded (a crash may make one fail "
                 "with EEXIST/ENOENT)", kResendRecords);
  }
  return nullptr;
}

void ResendLog::Free(ResendRecord* r) {
  std::lock_guard<std::mutex> l(mu_);
  r->state.store(0);
  r->unique.store(0);
}

ResendableOp::ResendableOp(fuse_req_t req, const char* what, ResendLog::Kind kind, int dir1, const char* name1,
                           int dir2, const char* name2)
    : log_(&Fs::Of(req).resends()), what_(what), kind_(kind), dir1_(dir1), dir2_(dir2), name1_(name1), name2_(name2) {
  const uint64_t unique = RequestUnique(req);
  if (unique == 0) return;  // unknown libfuse layout: run as before, unrecorded
  const uint64_t id = unique & ~kResendBit;
  if ((unique & kResendBit) != 0 && (rec_ = log_->Find(id)) != nullptr) {
    resent_ = true;
    return;
  }
  if ((rec_ = log_->Claim(id)) == nullptr) return;
  const Identity one = IdentityOf(dir1_, name1_);
  const Identity two = kind_ == ResendLog::kMovesName || kind_ == ResendLog::kExchangesNames ? IdentityOf(dir2_, name2_)
                                                                                            : Identity{};
  rec_->kind = kind_;
  rec_->dev1 = one.dev;
  rec_->ino1 = one.ino;
  rec_->dev2 = two.dev;
  rec_->ino2 = two.ino;
  rec_->err = 0;
  rec_->state.store(ResendLog::kStarted);  // last: the record is complete
}

ResendableOp::~ResendableOp() {
  if (rec_ != nullptr) log_->Free(rec_);
}

bool ResendableOp::HappenedSince() const {
  const Identity before1{rec_->dev1, rec_->ino1};
  const Identity before2{rec_->dev2, rec_->ino2};
  const Identity now1 = IdentityOf(dir1_, name1_);
  switch (rec_->kind) {
    case ResendLog::kCreatesName:
      return !before1.present() && now1.present();
    case ResendLog::kRemovesName:
      return before1.present() && !(now1 == before1);
    case ResendLog::kMovesName:
      return before1.present() && !(now1 == before1) && IdentityOf(dir2_, name2_) == before1;
    case ResendLog::kExchangesNames:
      return before1.present() && before2.present() && now1 == before2 && IdentityOf(dir2_, name2_) == before1;
  }
  return false;
}

int ResendableOp::Run(const std::function<int()>& syscall) {
  if (resent_) {
    if (rec_->state.load() == ResendLog::kDone) {
      already_done_ = rec_->err == 0;
      spdlog::info("resent {}: the dead worker had carried it out (result {}); not run again", what_, rec_->err);
      return rec_->err;
    }
    if (HappenedSince()) {
      already_done_ = true;
      rec_->err = 0;
      rec_->state.store(ResendLog::kDone);
      spdlog::info("resent {}: the dead worker's syscall had taken effect; answered as done", what_);
      return 0;
    }
  }
  const int err = syscall();
  if (rec_ == nullptr) return err;
  MaybeKillForTest(what_);
  rec_->err = err;
  rec_->state.store(ResendLog::kDone);
  return err;
}

}  // namespace migratefs::fs
