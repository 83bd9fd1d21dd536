#include "fs/session.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include <spdlog/spdlog.h>

#include "fs/device_io.h"
#include "fs/init_reply.h"
#include "fs/kernel_protocol.h"

namespace migratefs::fs {
namespace {

Error Fail(const std::string& msg) { return MakeError(errc::kInvalidArgument, msg); }

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

struct MountEntry {
  std::string devno;  // "major:minor"
  std::string fstype;
};

// The topmost mount at `dir` according to /proc/self/mountinfo, if any.
bool FindMount(const std::string& dir, MountEntry* out) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  bool found = false;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, devno, root, mnt, field;
    ls >> id >> parent >> devno >> root >> mnt;
    if (Unescape(mnt) != dir) continue;
    while (ls >> field && field != "-") {
    }
    std::string fstype;
    ls >> fstype;
    *out = MountEntry{devno, fstype};
    found = true;  // keep going: later lines are mounted on top
  }
  return found;
}

// "fsname=" and the source shown in /proc/mounts: libfuse splits on ',' unless
// escaped.
std::string EscapeOpt(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

Result<std::string> ResolveDir(const std::string& path, const char* what) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) {
    int err = errno;
    if (err == ENOTCONN) {
      return Fail(std::string(what) + " '" + path +
                  "': a FUSE mount whose daemon has died is still there (run `fusermount3 -u " + path + "`)");
    }
    return Fail(std::string(what) + " '" + path + "': " + strerror(err));
  }
  struct stat st;
  if (stat(buf, &st) < 0) return Fail(std::string(what) + " '" + path + "': " + strerror(errno));
  if (!S_ISDIR(st.st_mode)) return Fail(std::string(what) + " '" + path + "' is not a directory");
  return std::string(buf);
}

bool Session::NewLowLevelSession(const CommandLine& cl, const std::string& src, std::string* kopts) {
  // Access checks are the kernel's (default_permissions): it compares the caller's
  // credentials with the owner and mode we report, which are the backing file's.
  *kopts = "default_permissions,subtype=migratefs,fsname=" + EscapeOpt(cl.fsname.empty() ? src : cl.fsname);
  if (cl.opts.allow_other) *kopts += ",allow_other";
  for (const std::string& f : cl.mount_flags) *kopts += "," + f;
  if (cl.opts.debug) *kopts += ",debug";
  std::vector<const char*> argv = {"migratefs", "-o", kopts->c_str()};
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), const_cast<char**>(argv.data()));
  se_ = fuse_session_new(&args, &LowLevelOps(), sizeof(fuse_lowlevel_ops), fs_.get());
  if (se_ == nullptr) return false;
  fs_->set_session(se_);
  return true;
}

bool Session::ProcessInit(const std::vector<uint8_t>& init, uint32_t extra_flags) {
  InitReplyAmendment amend;
  amend.flags = extra_flags;
  amend.max_pages = kReadPages;
  const uint32_t added = ProcessInitAmending(se_, init, amend);
  if (added & kInitHandleKillprivV2) spdlog::debug("FUSE init: HANDLE_KILLPRIV_V2 (the daemon clears set-id bits)");
  return fs_->initialized();
}

Result<std::unique_ptr<Session>> Session::Mount(const CommandLine& cl, RestartState* state) {
  auto src = ResolveDir(cl.opts.source, "SRC");
  if (!src) return src.error();
  auto mnt = ResolveDir(cl.opts.mountpoint, "MNT");
  if (!mnt) return mnt.error();
  MountEntry existing;
  if (FindMount(mnt.value(), &existing) && existing.fstype.rfind("fuse", 0) == 0) {
    return Fail("MNT '" + mnt.value() + "' is busy: a " + existing.fstype +
                " file system is already mounted there (unmount it first: fusermount3 -u " + mnt.value() + ")");
  }
  std::unique_ptr<Session> s(new Session());
  if (state == nullptr) {
    auto own = RestartState::Create();
    if (!own) return own.error();
    s->own_state_ = std::move(own.value());
    state = s->own_state_.get();
  }
  s->state_ = state;
  // Opened before mounting: when MNT == SRC this fd still reaches the images below.
  int src_fd = open(src.value().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (src_fd < 0) return Fail("SRC '" + cl.opts.source + "': " + strerror(errno));

  s->mountpoint_ = mnt.value();
  s->read_ahead_kb_ = cl.read_ahead_kb;
  s->dirty_max_mb_ = cl.dirty_max_mb;
  MountOptions opts = cl.opts;
  opts.source = src.value();
  opts.mountpoint = mnt.value();
  s->fs_ = std::make_unique<Fs>(opts, src_fd, cl.timeout, state);
  s->fs_->set_splice_read(cl.splice_read);
  std::string kopts;
  if (!s->NewLowLevelSession(cl, src.value(), &kopts)) {
    return Fail("cannot create the FUSE session (options: " + kopts + ")");
  }
  if (fuse_session_mount(s->se_, s->mountpoint_.c_str()) != 0) {
    return Fail("cannot mount on MNT '" + s->mountpoint_ + "' (is /dev/fuse usable? see the message above)");
  }
  s->mounted_ = true;
  // INIT is answered here rather than by the loop, so that its bytes can be kept:
  // a worker that takes this connection over later replays them (Resume).
  std::vector<uint8_t> init;
  const int fuse_fd = fuse_session_fd(s->se_);
  if (int err = InstallDeviceIo(s->se_, fuse_fd)) return Fail("cannot route the FUSE session's I/O: " + std::string(strerror(-err)));
  if (int err = ReadInitRequest(fuse_fd, &init)) {
    return Fail("MNT '" + s->mountpoint_ + "': no INIT from the kernel: " + strerror(err));
  }
  if (init.size() > kMaxInitBytes) return Fail("INIT request of " + std::to_string(init.size()) + " bytes");
  RestartHeader& h = state->header();
  memcpy(h.init, init.data(), init.size());
  h.init_len = static_cast<uint32_t>(init.size());
  h.fuse_fd = fuse_fd;
  if (!s->ProcessInit(init, cl.killpriv_v2 ? kInitHandleKillprivV2 : 0)) return Fail("the kernel's FUSE protocol is too old for libfuse " + std::string(fuse_pkgversion()));
  h.mounted.store(1);
  return s;
}

Result<std::unique_ptr<Session>> Session::Resume(const CommandLine& cl, RestartState* state) {
  RestartHeader& h = state->header();
  if (h.mounted.load() == 0 || h.fuse_fd < 0) return Fail("nothing to resume: the state holds no mount");
  std::unique_ptr<Session> s(new Session());
  s->state_ = state;
  s->resumed_ = true;
  s->mountpoint_ = cl.opts.mountpoint;
  char buf[PATH_MAX];
  if (realpath(cl.opts.mountpoint.c_str(), buf) != nullptr) s->mountpoint_ = buf;
  s->read_ahead_kb_ = cl.read_ahead_kb;
  s->dirty_max_mb_ = cl.dirty_max_mb;
  MountOptions opts = cl.opts;
  s->fs_ = std::make_unique<Fs>(opts, cl.timeout, state);
  s->fs_->set_splice_read(cl.splice_read);
  if (realpath(cl.opts.source.c_str(), buf) != nullptr) opts.source = buf;

  // Order matters: the requests the dead worker took sit on the processing queue of
  // the /dev/fuse fd it read them from (a clone fd of its own); closing that fd
  // would fail them with ECONNABORTED. Resend first, then close.
  if (int err = NotifyResend(h.fuse_fd)) {
    spdlog::warn("FUSE_NOTIFY_RESEND failed ({}): requests the dead worker had taken will wait forever",
                 strerror(err));
  }
  CloseFdsExcept(state->NamedFds());

  std::string kopts;
  if (!s->NewLowLevelSession(cl, opts.source, &kopts)) {
    return Fail("cannot create the FUSE session (options: " + kopts + ")");
  }
  const std::string dev = "/dev/fd/" + std::to_string(h.fuse_fd);
  if (fuse_session_mount(s->se_, dev.c_str()) != 0) return Fail("cannot take over " + dev);
  s->mounted_ = true;
  if (int err = InstallDeviceIo(s->se_, fuse_session_fd(s->se_))) {
    return Fail("cannot route the FUSE session's I/O: " + std::string(strerror(-err)));
  }
  if (!s->ProcessInit(ReplayableInit(h.init, h.init_len))) return Fail("libfuse refused the saved INIT");
  return s;
}

Session::~Session() {
  fs_->set_session(nullptr);
  Unmount();
  if (tuner_.joinable()) tuner_.join();
  if (se_ != nullptr) fuse_session_destroy(se_);
}

void Session::TuneBdi() {
  // The mount's backing-device info in sysfs, settable only after INIT:
  //  - read_ahead_kb: the kernel takes min(its default, what INIT asked for), so a
  //    larger value can only be set here. Small sequential readers (bonnie++, qemu-img
  //    convert) otherwise get 128 KiB READs.
  //  - max_bytes: the kernel caps a FUSE mount's dirty pages at 1 % of dirtyable
  //    memory (max_ratio=1 with strict_limit: ~50 MB here), so buffered writers are
  //    throttled to the daemon's pace as soon as that little is dirty; the cap exists
  //    against untrusted servers that never write back, which this daemon is not.
  //    strict_limit stays on: the mount still has its own, larger, limit.
  MountEntry m;
  if (!FindMount(mountpoint_, &m) || m.fstype.rfind("fuse", 0) != 0) return;
  for (int i = 0; i < 50 && !fs_->initialized(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // INIT reply processed by now
  auto set = [&](const std::string& knob, uint64_t value) {
    const std::string path = "/sys/class/bdi/" + m.devno + "/" + knob;
    std::ofstream f(path);
    f << value << "\n";
    if (!f.flush()) spdlog::debug("cannot set {} (not fatal)", path);
  };
  if (read_ahead_kb_ != 0) set("read_ahead_kb", read_ahead_kb_);
  if (dirty_max_mb_ != 0) set("max_bytes", uint64_t(dirty_max_mb_) << 20);
}

int Session::Loop() {
  tuner_ = std::thread([this] { TuneBdi(); });
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  // One /dev/fuse fd per worker: wake-ups do not contend on one queue.
  fuse_loop_cfg_set_clone_fd(cfg, 1);
  fuse_loop_cfg_set_max_threads(cfg, fs_->options().max_threads);
  // Held notifications wait for requests this loop serves: sent beside it, never
  // before it (Fs::ServeHeldNotifications).
  std::thread held([this] { fs_->ServeHeldNotifications(); });
  int rc = fuse_session_loop_mt(se_, cfg);
  held.join();
  fuse_loop_cfg_destroy(cfg);
  if (tuner_.joinable()) tuner_.join();
  return rc;
}

void Session::Exit() {
  if (se_ != nullptr) fuse_session_exit(se_);
  Unmount();
}

void Session::Unmount() {
  if (!mounted_) return;
  mounted_ = false;
  if (state_ != nullptr) state_->header().mounted.store(0);
  if (!resumed_) {
    fuse_session_unmount(se_);
    return;
  }
  // libfuse does not know the mount point of a taken-over fd: do what it would
  // (close our end, detach the mount).
  if (umount2(mountpoint_.c_str(), MNT_DETACH) < 0 && errno != EINVAL) {
    spdlog::warn("unmounting {}: {}", mountpoint_, strerror(errno));
  }
}

}  // namespace migratefs::fs
