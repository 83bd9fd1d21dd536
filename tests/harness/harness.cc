#include <gtest/gtest.h>

#include "tests/harness/harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

namespace migratefs::testing {

namespace {
std::atomic<int> g_counter{0};

std::vector<std::string> InNetns(const std::vector<std::string>& argv, const std::string& netns) {
  if (netns.empty()) return argv;
  // nsenter switches only the network namespace. `ip netns exec` would also unshare
  // the mount namespace, hiding the daemon's FUSE mount from the test.
  std::vector<std::string> out = {"nsenter", "--net=/var/run/netns/" + netns, "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

[[noreturn]] void Exec(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  _exit(127);
}

std::vector<std::string> MountsUnder(const std::string& prefix) {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mounts");
  std::string dev, dir, rest;
  while (in >> dev >> dir && std::getline(in, rest))
    if (dir.rfind(prefix, 0) == 0) out.push_back(dir);
  return out;
}
}  // namespace

std::string MigratefsBinary() { return MIGRATEFS_BINARY; }

bool RunningAsRoot() { return geteuid() == 0; }
bool HaveTool(const std::string& name) { return Shell("command -v " + name + " >/dev/null 2>&1") == 0; }

TempDir::TempDir(const std::string& tag) {
  std::string tmpl = "/tmp/mfs-" + tag + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back(0);
  path_ = mkdtemp(buf.data());
}

TempDir::~TempDir() {
  for (int i = 0; i < 3; i++) {
    auto mounts = MountsUnder(path_);
    if (mounts.empty()) break;
    for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) Shell("umount -l '" + *it + "' 2>/dev/null");
  }
  Shell("rm -rf '" + path_ + "'");
}

int RunCmd(const std::vector<std::string>& argv, const std::string& netns) {
  pid_t pid = Spawn(argv, netns);
  return WaitPid(pid, std::chrono::hours(1));
}

int Shell(const std::string& cmd) {
  int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

pid_t Spawn(const std::vector<std::string>& argv, const std::string& netns, const std::string& log) {
  auto full = InNetns(argv, netns);
  pid_t pid = fork();
  if (pid == 0) {
    if (!log.empty()) {
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
    }
    Exec(full);
  }
  return pid;
}

int WaitPid(pid_t pid, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (r < 0) return -1;
    if (std::chrono::steady_clock::now() > end) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

// --- Daemon ---------------------------------------------------------------------

Daemon::Daemon(const std::string& base, DaemonConfig cfg)
    : cfg_(std::move(cfg)),
      base_(base),
      src_(base + "/src"),
      mnt_(base + "/mnt"),
      control_(base + "/control.sock"),
      log_(base + "/daemon.log") {
  mkdir(base_.c_str(), 0755);
  mkdir(src_.c_str(), 0755);
  mkdir(mnt_.c_str(), 0755);
}

Daemon::~Daemon() { Stop(); }

::testing::AssertionResult Daemon::Start() {
  std::string opts = "control=" + control_ + ",pidfile=" + base_ + "/worker.pid,state_dir=" + base_ + "/state";
  unlink((base_ + "/worker.pid").c_str());
  if (!cfg_.listen.empty()) opts += ",listen=" + cfg_.listen;
  if (!cfg_.keyfile.empty()) opts += ",keyfile=" + cfg_.keyfile;
  if (cfg_.insecure) opts += ",insecure";
  if (!cfg_.extra_opts.empty()) opts += "," + cfg_.extra_opts;
  std::vector<std::string> argv = cfg_.launcher;
  for (const std::string& a : {MigratefsBinary(), src_, mnt_, std::string("-f"), std::string("-o"), opts}) argv.push_back(a);
  pid_ = Spawn(argv, cfg_.netns, log_);
  bool up = WaitFor(
      [&] {
        if (WaitPid(pid_, std::chrono::milliseconds(0)) != -1) return true;  // exited
        return ControlAnswers() && !MountsUnder(mnt_).empty();
      },
      std::chrono::seconds(20));
  if (!up || kill(pid_, 0) != 0) {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    pid_ = -1;
    return ::testing::AssertionFailure() << cfg_.name << " did not start; log:\n" << ss.str();
  }
  return ::testing::AssertionSuccess();
}

bool Daemon::ControlAnswers() const {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a = {};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, control_.c_str(), sizeof(a.sun_path) - 1);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(fd);
  return ok;
}

pid_t Daemon::WorkerPid() const {
  std::ifstream in(base_ + "/worker.pid");
  pid_t p = -1;
  if (!(in >> p)) return -1;
  return p;
}

::testing::AssertionResult Daemon::KillWorker9(pid_t* new_pid) {
  const pid_t old = WorkerPid();
  if (old <= 0) return ::testing::AssertionFailure() << "no worker pidfile";
  if (kill(old, SIGKILL) != 0) return ::testing::AssertionFailure() << "kill " << old << ": " << strerror(errno);
  pid_t now = -1;
  bool back = WaitFor(
      [&] {
        now = WorkerPid();
        if (now <= 0 || now == old) return false;
        return ControlAnswers();
      },
      std::chrono::seconds(10));
  if (!back) return ::testing::AssertionFailure() << "no new worker after killing " << old;
  if (new_pid != nullptr) *new_pid = now;
  return ::testing::AssertionSuccess();
}

size_t Daemon::OpenFds() const {
  size_t n = 0;
  std::error_code ec;
  const pid_t w = WorkerPid();
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(w > 0 ? w : pid_) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++n;
  return n;
}

size_t Daemon::RssKib() const {
  const pid_t w = WorkerPid();
  std::ifstream in("/proc/" + std::to_string(w > 0 ? w : pid_) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6));
  return 0;
}

void Daemon::Stop() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    if (WaitPid(pid_, std::chrono::seconds(15)) == -1) {
      kill(pid_, SIGKILL);
      WaitPid(pid_, std::chrono::seconds(5));
    }
    pid_ = -1;
  }
  if (!MountsUnder(mnt_).empty()) Shell("fusermount3 -u -z '" + mnt_ + "' 2>/dev/null || umount -l '" + mnt_ + "'");
}

void Daemon::Kill9() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    WaitPid(pid_, std::chrono::seconds(5));
    pid_ = -1;
  }
  Shell("fusermount3 -u -z '" + mnt_ + "' 2>/dev/null || umount -l '" + mnt_ + "' 2>/dev/null");
}

nlohmann::json Daemon::Request(const nlohmann::json& req, std::chrono::milliseconds timeout) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a = {};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, control_.c_str(), sizeof(a.sun_path) - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return {{"ok", false}, {"error", {{"code", "test_connect"}, {"message", std::strerror(errno)}}}};
  }
  timeval tv{long(timeout.count() / 1000), long((timeout.count() % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string line = req.dump() + "\n";
  if (write(fd, line.data(), line.size()) != ssize_t(line.size())) {
    close(fd);
    return {{"ok", false}, {"error", {{"code", "test_write"}}}};
  }
  std::string answer;
  char c;
  while (read(fd, &c, 1) == 1 && c != '\n') answer += c;
  close(fd);
  auto j = nlohmann::json::parse(answer, nullptr, false);
  if (j.is_discarded()) return {{"ok", false}, {"error", {{"code", "test_parse"}, {"message", answer}}}};
  return j;
}

::testing::AssertionResult WaitForPhase(Daemon& d, const std::string& id, const std::string& phase,
                                        std::chrono::milliseconds timeout) {
  std::string last;
  bool ok = WaitFor(
      [&] {
        auto r = d.Request({{"op", "query_progress"}, {"id", id}, {"what", "network"}});
        last = r.dump();
        if (!r.value("ok", false)) return false;
        std::string p = r.value("phase", "");
        return p == phase || p == "failed" || p == "cancelled";
      },
      timeout);
  if (ok && last.find("\"phase\":\"" + phase + "\"") != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "phase " << phase << " not reached; last progress: " << last;
}

::testing::AssertionResult WaitForCompletion(Daemon& d, const std::string& id, std::chrono::milliseconds timeout) {
  std::string last;
  bool ok = WaitFor(
      [&] {
        auto r = d.Request({{"op", "query_completion"}, {"id", id}});
        last = r.dump();
        return r.value("completed", false);
      },
      timeout);
  if (ok) return ::testing::AssertionSuccess();
  auto p = d.Request({{"op", "query_progress"}, {"id", id}, {"what", "network"}});
  return ::testing::AssertionFailure() << "not completed: " << last << " progress: " << p.dump();
}

::testing::AssertionResult FilesEqual(const std::string& a, const std::string& b) {
  std::ifstream fa(a, std::ios::binary), fb(b, std::ios::binary);
  if (!fa) return ::testing::AssertionFailure() << "cannot open " << a;
  if (!fb) return ::testing::AssertionFailure() << "cannot open " << b;
  struct stat sa, sb;
  stat(a.c_str(), &sa);
  stat(b.c_str(), &sb);
  if (sa.st_size != sb.st_size)
    return ::testing::AssertionFailure() << "sizes differ: " << a << " " << sa.st_size << " vs " << b << " " << sb.st_size;
  std::vector<char> ba(1 << 20), bb(1 << 20);
  uint64_t off = 0;
  for (;;) {
    fa.read(ba.data(), ba.size());
    fb.read(bb.data(), bb.size());
    std::streamsize na = fa.gcount(), nb = fb.gcount();
    if (na != nb) return ::testing::AssertionFailure() << "short read at " << off;
    if (na == 0) break;
    if (std::memcmp(ba.data(), bb.data(), size_t(na)) != 0) {
      for (std::streamsize i = 0; i < na; i++)
        if (ba[i] != bb[i])
          return ::testing::AssertionFailure() << a << " and " << b << " differ at byte " << off + uint64_t(i)
                                               << " (block " << (off + uint64_t(i)) / (512 * 1024) << ")";
    }
    off += uint64_t(na);
  }
  return ::testing::AssertionSuccess();
}

uint64_t VoluntaryContextSwitches(pid_t pid) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream status(task.path() / "status");
    std::string key;
    while (status >> key) {
      if (key == "voluntary_ctxt_switches:") {
        uint64_t n = 0;
        status >> n;
        total += n;
        break;
      }
    }
  }
  return total;
}

void WritePatternFile(const std::string& path, uint64_t size, uint64_t seed) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> buf(1 << 17);
  for (uint64_t done = 0; done < size;) {
    for (auto& w : buf) w = rng();
    uint64_t n = std::min<uint64_t>(size - done, buf.size() * 8);
    out.write(reinterpret_cast<const char*>(buf.data()), std::streamsize(n));
    done += n;
  }
}

void WriteKeyFile(const std::string& path) {
  Shell("head -c 32 /dev/urandom > '" + path + "' && chmod 600 '" + path + "'");
}

// --- NetnsPair ------------------------------------------------------------------

NetnsPair::NetnsPair() {
  int n = (getpid() * 7 + g_counter.fetch_add(1)) % 200 + 20;
  std::string tag = std::to_string(getpid() % 100000) + "x" + std::to_string(n);
  a_ = "mfsa" + tag;
  b_ = "mfsb" + tag;
  veth_a_ = "va" + tag;
  veth_b_ = "vb" + tag;
  // Test-host addresses that exist only inside these two namespaces.
  addr_a_ = "10.77." + std::to_string(n) + ".1";
  addr_b_ = "10.77." + std::to_string(n) + ".2";
  ok_ = Shell("ip netns add " + a_) == 0 && Shell("ip netns add " + b_) == 0 &&
        Shell("ip link add " + veth_a_ + " type veth peer name " + veth_b_) == 0 &&
        Shell("ip link set " + veth_a_ + " netns " + a_) == 0 && Shell("ip link set " + veth_b_ + " netns " + b_) == 0 &&
        Shell("ip -n " + a_ + " addr add " + addr_a_ + "/24 dev " + veth_a_) == 0 &&
        Shell("ip -n " + b_ + " addr add " + addr_b_ + "/24 dev " + veth_b_) == 0 &&
        Shell("ip -n " + a_ + " link set " + veth_a_ + " up && ip -n " + a_ + " link set lo up") == 0 &&
        Shell("ip -n " + b_ + " link set " + veth_b_ + " up && ip -n " + b_ + " link set lo up") == 0;
}

NetnsPair::~NetnsPair() {
  Shell("ip netns del " + a_ + " 2>/dev/null");
  Shell("ip netns del " + b_ + " 2>/dev/null");
}

void NetnsPair::LinkDown() { Shell("ip -n " + a_ + " link set " + veth_a_ + " down"); }
void NetnsPair::LinkUp() { Shell("ip -n " + a_ + " link set " + veth_a_ + " up"); }

}  // namespace migratefs::testing
