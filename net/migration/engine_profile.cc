// Engine's write profile and prediction (issue 10 item 6): the profile op attaches a
// WriteProfiler to idle images for its window; predict runs the pure hybrid predictor
// (broker/policy/hybrid_predictor.h) on the last profile of each image. See engine.h.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "broker/policy/predict_format.h"
#include "net/image_name.h"
#include "net/migration/engine.h"
#include "net/migration/write_profiler.h"

namespace migratefs::migration {

namespace {

struct Profiled {
  std::string name;
  int fd = -1;
  dev_t dev = 0;
  ino_t ino = 0;
  std::shared_ptr<WriteProfiler> hook;
  bool attached = false;
};

}  // namespace

void Engine::StopProfiles() {
  {
    std::lock_guard<std::mutex> lock(profile_mu_);
    profile_stop_ = true;
  }
  profile_cv_.notify_all();
}

Result<std::vector<policy::ImageProfile>> Engine::Profile(const ProfileRequest& req) {
  if (req.images.empty()) return MakeError(errc::kBadRequest, "profile: \"images\" is empty");
  if (req.seconds < 1 || req.seconds > kMaxProfileSeconds)
    return MakeError(errc::kInvalidArgument, "profile: seconds must be 1..3600");
  if (!ctx_.hooks || ctx_.src_dirfd < 0) return MakeError(errc::kInternal, "profile: this daemon serves no mount");
  const uint64_t block = ctx_.block_size == 0 ? policy::kDefaultBlockBytes : ctx_.block_size;

  std::vector<Profiled> images;
  auto cleanup = [&] {
    for (Profiled& p : images) {
      if (p.attached) ctx_.hooks->Detach(p.dev, p.ino, p.hook.get());
      if (p.fd >= 0) ::close(p.fd);
    }
  };
  auto fail = [&](Error e) {
    cleanup();
    return e;
  };
  for (const std::string& name : req.images) {
    if (Status valid = net::ValidateImageName(name); !valid.ok()) return fail(valid.error());
    Profiled p;
    p.name = name;
    p.fd = net::OpenImageBeneath(ctx_.src_dirfd, name);
    if (p.fd < 0) {
      int err = errno;
      if (err == ENOENT) return fail(MakeError(errc::kNotFound, "image \"" + name + "\" does not exist"));
      if (err == EXDEV || err == ELOOP)
        return fail(MakeError(errc::kBadName, "image \"" + name + "\" leaves the served directory or is a symlink"));
      if (err == EMFILE || err == ENFILE)
        return fail(MakeError(errc::kResourceExhausted, "cannot open image \"" + name + "\": " + std::strerror(err)));
      return fail(MakeError(errc::kIo, "cannot open image \"" + name + "\": " + std::strerror(err)));
    }
    struct stat st;
    if (::fstat(p.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(p.fd);
      return fail(MakeError(errc::kInvalidArgument, "image \"" + name + "\" is not a regular file"));
    }
    p.dev = st.st_dev;
    p.ino = st.st_ino;
    for (const Profiled& other : images)
      if (other.dev == p.dev && other.ino == p.ino) {
        ::close(p.fd);
        return fail(MakeError(errc::kInvalidArgument, "image \"" + name + "\" is listed twice"));
      }
    const uint64_t blocks = (uint64_t(st.st_size) + block - 1) / block;
    if (blocks > policy::kMaxPredictBlocks) {
      ::close(p.fd);
      return fail(MakeError(errc::kInvalidArgument, "image \"" + name + "\" has " + std::to_string(blocks) +
                                                        " blocks; the predictor takes at most " +
                                                        std::to_string(policy::kMaxPredictBlocks)));
    }
    p.hook = std::make_shared<WriteProfiler>(block, blocks);
    images.push_back(std::move(p));
  }

  {
    // Under mu_: a start (which attaches its hooks under it too) cannot slip in between
    // the check and the attach. The receiver attaches without it; a copy it begins to
    // receive in that instant replaces our hook, and the detach below notices.
    std::lock_guard<std::mutex> lock(mu_);
    for (Profiled& p : images) {
      for (auto& [id, fence] : restored_)
        if (fence.dev == p.dev && fence.ino == p.ino)
          return fail(MakeError(errc::kWrongState, "image \"" + p.name + "\" is fenced (" + id +
                                                       "): a migrated-away copy is not written; nothing to profile"));
      for (auto& [id, m] : migrations_) {
        if (!m->HoldsImages()) continue;
        for (auto& theirs : m->images())
          if (theirs->dev() == p.dev && theirs->ino() == p.ino)
            return fail(MakeError(errc::kWrongState,
                                  "image \"" + p.name + "\" is in migration " + id +
                                      " (or fenced by it): profile an image before starting its migration"));
      }
      if (std::shared_ptr<ImageHook> other = ctx_.hooks->Find(p.dev, p.ino)) {
        if (dynamic_cast<WriteProfiler*>(other.get()) != nullptr)
          return fail(MakeError(errc::kBusy, "image \"" + p.name + "\" is being profiled already"));
        return fail(MakeError(errc::kWrongState, "image \"" + p.name +
                                                     "\" is a copy being received or a fenced copy: profile an "
                                                     "image on its source, before starting its migration"));
      }
    }
    for (Profiled& p : images) {
      ctx_.hooks->Attach(p.dev, p.ino, p.hook);
      p.attached = true;
    }
  }

  const auto began = std::chrono::steady_clock::now();
  bool stopped = false;
  {
    std::unique_lock<std::mutex> lock(profile_mu_);
    stopped = profile_cv_.wait_until(lock, began + std::chrono::seconds(req.seconds), [&] { return profile_stop_; });
  }
  // Detach first, then read the clock: every write counted happened before this.
  bool replaced = false;
  std::string replaced_name;
  for (Profiled& p : images) {
    if (!ctx_.hooks->Detach(p.dev, p.ino, p.hook.get()) && !replaced) {
      replaced = true;
      replaced_name = p.name;
    }
    p.attached = false;
  }
  const double window_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  if (stopped) return fail(MakeError(errc::kWrongState, "profile: the daemon is shutting down"));
  if (replaced) {
    return fail(MakeError(errc::kWrongState, "image \"" + replaced_name +
                                                 "\": a migration started (or a copy began to be received) "
                                                 "during the profile, so its counts are incomplete; profile an "
                                                 "image before starting its migration"));
  }

  std::vector<policy::ImageProfile> out;
  for (Profiled& p : images) {
    struct stat st;
    if (::fstat(p.fd, &st) != 0)
      return fail(MakeError(errc::kIo, "image \"" + p.name + "\": fstat: " + std::strerror(errno)));
    auto data = DataBlocks(p.fd, uint64_t(st.st_size), block);
    if (!data.ok()) return fail(MakeError(errc::kIo, "image \"" + p.name + "\": " + data.error().message));
    out.push_back(MakeProfile(p.name, uint64_t(st.st_size), window_s, *p.hook, std::move(data.value())));
  }
  cleanup();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const policy::ImageProfile& p : out) {
      if (profiles_.count(p.name) == 0) profile_order_.push_back(p.name);
      profiles_[p.name] = p;
    }
    while (profile_order_.size() > kKeepProfiles) {
      profiles_.erase(profile_order_.front());
      profile_order_.pop_front();
    }
  }
  return out;
}

Result<policy::Prediction> Engine::Predict(const PredictRequest& req) {
  if (req.images.empty()) return MakeError(errc::kBadRequest, "predict: \"images\" is empty");
  if (req.net_kbps == 0 || req.net_kbps > kMaxKbps)
    return MakeError(errc::kInvalidArgument, "predict: net_kbps must be 1..100000000");
  if (!(req.step > 0) || req.step > 100) return MakeError(errc::kInvalidArgument, "predict: step must be in (0, 100]");
  policy::PredictInput in;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& name : req.images) {
      auto it = profiles_.find(name);
      if (it == profiles_.end())
        return MakeError(errc::kWrongState, "no profile of " + name + ": run profile first");
      in.images.push_back(it->second);
    }
  }
  in.net_bps = double(req.net_kbps) * 1000;
  in.rtt_s = req.rtt_ms / 1000;
  in.deadline_s = req.deadline_s;
  in.s_percent = policy::SPercentSteps(req.step);
  auto p = policy::Predict(in);
  if (!p.ok()) return Error{p.error().code, "predict: " + p.error().message};
  return p;
}

}  // namespace migratefs::migration
