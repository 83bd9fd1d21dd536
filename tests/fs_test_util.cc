#include "tests/fs_test_util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace migratefs::fs::testing {

TempDir::TempDir() {
  char tmpl[] = "/tmp/mfs-test-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
  chmod(path_.c_str(), 0755);  // reachable for the unprivileged users of some tests
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool IsMounted(const std::string& dir) {
  std::ifstream in("/proc/self/mounts");
  std::string dev, mnt, rest;
  while (in >> dev >> mnt && std::getline(in, rest)) {
    if (mnt == dir) return true;
  }
  return false;
}

void ForceUnmount(const std::string& dir) {
  for (int i = 0; i < 3 && IsMounted(dir); i++) {
    if (umount2(dir.c_str(), 0) == 0) continue;
    umount2(dir.c_str(), MNT_FORCE);  // FUSE: aborts the connection
    umount2(dir.c_str(), MNT_DETACH);
  }
}

InProcessMount::InProcessMount(const std::string& options)
    : src_(dir_ / "src"), mnt_(dir_ / "mnt"), ref_(dir_ / "ref") {
  mkdir(src_.c_str(), 0755);
  mkdir(mnt_.c_str(), 0755);
  mkdir(ref_.c_str(), 0755);
  std::vector<const char*> argv = {"migratefs", src_.c_str(), mnt_.c_str(), "-f"};
  if (!options.empty()) {
    argv.push_back("-o");
    argv.push_back(options.c_str());
  }
  auto cl = ParseCommandLine(static_cast<int>(argv.size()), argv.data());
  if (!cl) throw std::runtime_error("bad test options: " + cl.error().message);
  umask(0);  // as main() does; tests that care set their own modes
  auto s = Session::Mount(cl.value());
  if (!s) throw std::runtime_error("mount failed: " + s.error().message);
  session_ = std::move(s.value());
  loop_ = std::thread([this] { session_->Loop(); });
  umask(022);
}

InProcessMount::~InProcessMount() {
  ForceUnmount(mnt_);
  if (loop_.joinable()) loop_.join();
  session_.reset();
}

std::string Q(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

Cmd Shell(const std::string& command, int timeout_s) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], 1);
    dup2(pipefd[1], 2);
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(pipefd[1]);
  Cmd r;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
  char buf[4096];
  int status = 0;
  bool done = false;
  while (!done) {
    ssize_t n;
    while ((n = read(pipefd[0], buf, sizeof(buf))) > 0) r.out.append(buf, n);
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) {
      done = true;
    } else if (std::chrono::steady_clock::now() > deadline) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      r.out += "\n[timed out]";
      done = true;
    } else {
      usleep(2000);
    }
  }
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof(buf))) > 0) r.out.append(buf, n);
  close(pipefd[0]);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::string Binary() { return MIGRATEFS_BINARY; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

std::string Pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint64_t x = 0x9E3779B97F4A7C15ull ^ seed;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x);
  }
  return s;
}

}  // namespace migratefs::fs::testing
