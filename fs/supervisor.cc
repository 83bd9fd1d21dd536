#include "fs/supervisor.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

namespace migratefs::fs {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxFastDeaths = 5;

// A fork that shares the fd table (see supervisor.h). Raw clone, as glibc has no
// wrapper for a CLONE_FILES fork; the supervisor is single-threaded, so the child's
// copy of memory holds no lock another thread was holding.
pid_t CloneSharingFds() {
  return static_cast<pid_t>(syscall(SYS_clone, CLONE_FILES | SIGCHLD, nullptr, nullptr, nullptr, nullptr));
}

sockaddr_un UpgradeAddress(const std::string& mountpoint, socklen_t* len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::string name = UpgradeSocketName(mountpoint);
  memcpy(a.sun_path + 1, name.data(), std::min(name.size(), sizeof(a.sun_path) - 2));
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  return a;
}

void Say(int fd, const std::string& line) {
  if (fd < 0) return;
  ssize_t n = write(fd, line.data(), line.size());
  (void)n;
}

// Every fd of this process, for the upgrade's exec: the new image must inherit them
// all (the records name them), so none may be close-on-exec.
void ClearCloseOnExec() {
  for (int fd : OpenFds()) {
    int fl = fcntl(fd, F_GETFD);
    if (fl >= 0 && (fl & FD_CLOEXEC)) fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
  }
}

class Supervisor {
 public:
  Supervisor(const SupervisorConfig& cfg, RestartState* state, const WorkerMain& worker)
      : cfg_(cfg), state_(state), worker_(worker) {}

  int Run(int reply_fd);

 private:
  bool Setup();
  void PublishKeptFds();
  void StartWorker();
  // Returns true when the supervisor should end (*status set).
  bool OnWorkerExit(int wstatus, int* status);
  void Upgrade(int reply_fd);
  void OnUpgradeRequest();
  void OnReady();

  SupervisorConfig cfg_;
  RestartState* state_;
  WorkerMain worker_;
  int sig_fd_ = -1, ready_rd_ = -1, ready_wr_ = -1, listen_fd_ = -1;
  std::vector<int> waiting_replies_;  // --upgrade callers to answer once serving
  pid_t worker_pid_ = -1;
  bool stopping_ = false;
  bool served_once_ = false;
  int fast_deaths_ = 0;
  Clock::time_point started_at_;
};

bool Supervisor::Setup() {
  // Signals arrive through a signalfd; the worker unblocks them in the clone.
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  if (sigprocmask(SIG_BLOCK, &set, nullptr) < 0) return false;
  sig_fd_ = signalfd(-1, &set, SFD_CLOEXEC);
  int p[2];
  if (sig_fd_ < 0 || pipe2(p, O_CLOEXEC) < 0) return false;
  ready_rd_ = p[0];
  ready_wr_ = p[1];
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  socklen_t len;
  sockaddr_un a = UpgradeAddress(cfg_.mountpoint, &len);
  if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), len) < 0 || listen(listen_fd_, 4) < 0) {
    // Not fatal: SIGHUP still upgrades.
    fprintf(stderr, "migratefs: upgrade socket for %s: %s (SIGHUP still upgrades)\n", cfg_.mountpoint.c_str(),
            strerror(errno));
    if (listen_fd_ >= 0) close(listen_fd_);
    listen_fd_ = -1;
  }
  return true;
}

// The fds a worker must never close: the supervisor's own.
void Supervisor::PublishKeptFds() {
  RestartHeader& h = state_->header();
  uint32_t n = 0;
  auto keep = [&](int fd) {
    if (fd >= 0 && n < kMaxKeptFds) h.kept_fds[n++] = fd;
  };
  keep(sig_fd_);
  keep(ready_rd_);
  keep(ready_wr_);
  keep(listen_fd_);
  for (int fd : waiting_replies_) keep(fd);
  if (!served_once_) keep(cfg_.report_fd);
  h.n_kept_fds = n;
}

void Supervisor::StartWorker() {
  RestartHeader& h = state_->header();
  h.starts++;
  PublishKeptFds();
  const pid_t parent = getpid();
  started_at_ = Clock::now();
  pid_t pid = CloneSharingFds();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);  // the supervisor died before the prctl
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, nullptr);
    _exit(worker_(state_, ready_wr_));
  }
  if (pid < 0) {
    fprintf(stderr, "migratefs: cannot start a worker: %s\n", strerror(errno));
    worker_pid_ = -1;
    return;
  }
  worker_pid_ = pid;
}

void Supervisor::OnReady() {
  char b[64];
  if (read(ready_rd_, b, sizeof(b)) <= 0) return;
  fast_deaths_ = 0;
  if (!served_once_) {
    served_once_ = true;
    if (cfg_.report_first_start) cfg_.report_first_start(0);
  }
  for (int fd : waiting_replies_) {
    Say(fd, "ok: worker " + std::to_string(worker_pid_) + " serves " + cfg_.mountpoint + "\n");
    close(fd);
  }
  waiting_replies_.clear();
}

bool Supervisor::OnWorkerExit(int wstatus, int* status) {
  worker_pid_ = -1;
  RestartHeader& h = state_->header();
  h.last_status = wstatus;
  const int code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
  if (h.mounted.load() == 0 || stopping_) {
    // Unmounted (a clean end), or the mount never came up: nothing to keep alive.
    if (!served_once_ && cfg_.report_first_start) cfg_.report_first_start(code == 0 ? 1 : code);
    for (int fd : waiting_replies_) {
      Say(fd, "error: the mount ended while upgrading\n");
      close(fd);
    }
    *status = code;
    return true;
  }
  const bool fast = Clock::now() - started_at_ < std::chrono::seconds(10);
  if (fast && ++fast_deaths_ >= kMaxFastDeaths) {
    fprintf(stderr, "migratefs: worker for %s died %d times in a row before serving; giving up\n",
            cfg_.mountpoint.c_str(), fast_deaths_);
    umount2(cfg_.mountpoint.c_str(), MNT_DETACH);
    *status = 1;
    return true;
  }
  StartWorker();
  return false;
}

void Supervisor::OnUpgradeRequest() {
  int c = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (c < 0) return;
  // Only root (or this daemon's user) may upgrade the mount.
  ucred cred{};
  socklen_t cl = sizeof(cred);
  if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || (cred.uid != 0 && cred.uid != getuid())) {
    Say(c, "error: permission denied\n");
    close(c);
    return;
  }
  pollfd p{c, POLLIN, 0};
  char line[64] = {};
  if (poll(&p, 1, 2000) != 1 || read(c, line, sizeof(line) - 1) <= 0 || strncmp(line, "upgrade", 7) != 0) {
    Say(c, "error: expected 'upgrade'\n");
    close(c);
    return;
  }
  Upgrade(c);
}

void Supervisor::Upgrade(int reply_fd) {
  if (access(cfg_.exe.c_str(), X_OK) != 0) {
    Say(reply_fd, "error: " + cfg_.exe + ": " + strerror(errno) + "\n");
    if (reply_fd >= 0) close(reply_fd);
    return;
  }
  if (worker_pid_ > 0) {
    kill(worker_pid_, SIGKILL);
    int ws;
    while (waitpid(worker_pid_, &ws, 0) < 0 && errno == EINTR) {
    }
    state_->header().last_status = ws;
    worker_pid_ = -1;
  }
  // Replies owed to earlier callers go with us: the new supervisor answers one.
  for (int fd : waiting_replies_) {
    Say(fd, "ok: superseded by a later upgrade request\n");
    close(fd);
  }
  waiting_replies_.clear();
  ClearCloseOnExec();
  // The new image starts with these signals unblocked again and sets up its own.
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
  close(sig_fd_);
  close(ready_rd_);
  close(ready_wr_);
  if (listen_fd_ >= 0) close(listen_fd_);
  state_->header().n_kept_fds = 0;
  std::vector<std::string> args = {cfg_.exe,
                                   "--resume-supervisor=" + std::to_string(state_->fd()) + "," + std::to_string(reply_fd)};
  for (const std::string& a : cfg_.args) {
    if (a.rfind("--resume-supervisor=", 0) != 0) args.push_back(a);
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  execv(cfg_.exe.c_str(), argv.data());
  // Still the old binary: carry on with it.
  const int err = errno;
  fprintf(stderr, "migratefs: upgrade: exec %s: %s; the old binary keeps serving\n", cfg_.exe.c_str(), strerror(err));
  Say(reply_fd, std::string("error: exec ") + cfg_.exe + ": " + strerror(err) + "\n");
  if (reply_fd >= 0) close(reply_fd);
  if (!Setup()) _exit(1);
  StartWorker();
}

int Supervisor::Run(int reply_fd) {
  if (!Setup()) {
    fprintf(stderr, "migratefs: supervisor setup: %s\n", strerror(errno));
    return 1;
  }
  if (reply_fd >= 0) waiting_replies_.push_back(reply_fd);
  StartWorker();
  for (;;) {
    if (worker_pid_ < 0) {
      // Could not clone: try again shortly.
      sleep(1);
      StartWorker();
      continue;
    }
    pollfd p[3] = {{sig_fd_, POLLIN, 0}, {ready_rd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    int n = poll(p, listen_fd_ >= 0 ? 3 : 2, -1);
    if (n < 0) continue;
    if (p[1].revents & POLLIN) OnReady();
    if (listen_fd_ >= 0 && (p[2].revents & POLLIN)) OnUpgradeRequest();
    if (p[0].revents & POLLIN) {
      signalfd_siginfo si;
      if (read(sig_fd_, &si, sizeof(si)) != sizeof(si)) continue;
      if (si.ssi_signo == SIGCHLD) {
        int ws;
        pid_t pid;
        while ((pid = waitpid(-1, &ws, WNOHANG)) > 0) {
          if (pid != worker_pid_) continue;
          int status;
          if (OnWorkerExit(ws, &status)) return status;
        }
      } else if (si.ssi_signo == SIGHUP) {
        Upgrade(-1);
      } else {  // SIGTERM, SIGINT: the worker unmounts and exits
        stopping_ = true;
        if (worker_pid_ > 0) kill(worker_pid_, SIGTERM);
      }
    }
  }
}

}  // namespace

std::string UpgradeSocketName(const std::string& mountpoint) {
  // FNV-1a: stable across compilers and versions, unlike std::hash.
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : mountpoint) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  char buf[64];
  snprintf(buf, sizeof(buf), "migratefs/upgrade/%016llx", static_cast<unsigned long long>(h));
  return buf;
}

int RunSupervisor(const SupervisorConfig& cfg, RestartState* state, int reply_fd, const WorkerMain& worker) {
  Supervisor s(cfg, state, worker);
  return s.Run(reply_fd);
}

int RequestUpgrade(const std::string& mountpoint) {
  char buf[PATH_MAX];
  const std::string mnt = realpath(mountpoint.c_str(), buf) != nullptr ? std::string(buf) : mountpoint;
  int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  socklen_t len;
  sockaddr_un a = UpgradeAddress(mnt, &len);
  if (c < 0 || connect(c, reinterpret_cast<sockaddr*>(&a), len) < 0) {
    fprintf(stderr, "migratefs: --upgrade %s: no supervised migratefs serves this mount point (%s)\n", mnt.c_str(),
            strerror(errno));
    return 1;
  }
  Say(c, "upgrade\n");
  std::string reply;
  pollfd p{c, POLLIN, 0};
  char b[256];
  while (reply.find('\n') == std::string::npos && poll(&p, 1, 120000) == 1) {
    ssize_t n = read(c, b, sizeof(b));
    if (n <= 0) break;
    reply.append(b, static_cast<size_t>(n));
  }
  close(c);
  if (reply.empty()) reply = "error: the supervisor closed the connection without an answer\n";
  fputs(("migratefs: " + reply).c_str(), reply.rfind("ok", 0) == 0 ? stdout : stderr);
  return reply.rfind("ok", 0) == 0 ? 0 : 1;
}

}  // namespace migratefs::fs
