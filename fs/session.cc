#include "fs/session.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include <spdlog/spdlog.h>

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

Result<std::unique_ptr<Session>> Session::Mount(const CommandLine& cl) {
  auto src = ResolveDir(cl.opts.source, "SRC");
  if (!src) return src.error();
  auto mnt = ResolveDir(cl.opts.mountpoint, "MNT");
  if (!mnt) return mnt.error();
  MountEntry existing;
  if (FindMount(mnt.value(), &existing) && existing.fstype.rfind("fuse", 0) == 0) {
    return Fail("MNT '" + mnt.value() + "' is busy: a " + existing.fstype +
                " file system is already mounted there (unmount it first: fusermount3 -u " + mnt.value() + ")");
  }
  // Opened before mounting: when MNT == SRC this fd still reaches the images below.
  int src_fd = open(src.value().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (src_fd < 0) return Fail("SRC '" + cl.opts.source + "': " + strerror(errno));

  std::unique_ptr<Session> s(new Session());
  s->mountpoint_ = mnt.value();
  s->read_ahead_kb_ = cl.read_ahead_kb;
  s->dirty_max_mb_ = cl.dirty_max_mb;
  MountOptions opts = cl.opts;
  opts.source = src.value();
  opts.mountpoint = mnt.value();
  s->fs_ = std::make_unique<Fs>(opts, src_fd, cl.timeout);
  s->fs_->set_splice_read(cl.splice_read);

  // Access checks are the kernel's (default_permissions): it compares the caller's
  // credentials with the owner and mode we report, which are the backing file's.
  std::string kopts = "default_permissions,subtype=migratefs,fsname=" +
                      EscapeOpt(cl.fsname.empty() ? src.value() : cl.fsname);
  if (opts.allow_other) kopts += ",allow_other";
  for (const std::string& f : cl.mount_flags) kopts += "," + f;
  if (opts.debug) kopts += ",debug";
  std::vector<const char*> argv = {"migratefs", "-o", kopts.c_str()};
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), const_cast<char**>(argv.data()));
  s->se_ = fuse_session_new(&args, &LowLevelOps(), sizeof(fuse_lowlevel_ops), s->fs_.get());
  if (s->se_ == nullptr) return Fail("cannot create the FUSE session (options: " + kopts + ")");
  s->fs_->set_session(s->se_);
  if (fuse_session_mount(s->se_, s->mountpoint_.c_str()) != 0) {
    return Fail("cannot mount on MNT '" + s->mountpoint_ + "' (is /dev/fuse usable? see the message above)");
  }
  s->mounted_ = true;
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
  int rc = fuse_session_loop_mt(se_, cfg);
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
  fuse_session_unmount(se_);
}

}  // namespace migratefs::fs
