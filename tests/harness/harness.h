// Test harness for end-to-end migration tests: real migratefs daemons (each with its
// own SRC directory, FUSE mount, control socket and peer port), their control sockets,
// network namespaces, and byte-for-byte file comparison. Everything a test creates is
// removed by destructors, also when an assertion fails.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace migratefs::testing {

// Paths of the built binaries (set by CMake).
std::string MigratefsBinary();

// A scratch directory removed (after unmounting anything below it) at destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& tag);
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Runs `argv` (optionally inside network namespace `netns`); returns the exit status
// (or -1 when it could not run). Output goes to the test log.
int RunCmd(const std::vector<std::string>& argv, const std::string& netns = "");
// Runs a shell command line; returns its exit status.
int Shell(const std::string& cmd);
// Starts a background process; returns its pid.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& netns = "", const std::string& log = "");
// Waits for pid with a timeout; returns exit status, or -1 on timeout (still running).
int WaitPid(pid_t pid, std::chrono::milliseconds timeout);

struct DaemonConfig {
  std::string name = "d";          // for logs
  std::string listen;              // HOST:PORT or "" (no listener)
  std::string keyfile;             // "" = none
  bool insecure = false;
  std::string netns;               // run inside this namespace
  std::string extra_opts;          // appended to -o
  std::vector<std::string> launcher;  // runs the daemon through this (e.g. prlimit --nofile=N:N); must exec it
};

// One migratefs daemon in the foreground: SRC = base/src, MNT = base/mnt,
// control socket base/control.sock.
class Daemon {
 public:
  Daemon(const std::string& base, DaemonConfig cfg);
  ~Daemon();  // Stop()

  // Starts and waits until the mount and the control socket answer.
  ::testing::AssertionResult Start();
  void Stop();    // SIGTERM, then unmount
  void Kill9();   // SIGKILL of the supervisor (the worker dies with it), then lazy unmount
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }  // the supervisor (the process started)
  // The worker serving the mount (from -o pidfile), or -1.
  pid_t WorkerPid() const;
  // SIGKILLs the worker only, then waits until the supervisor's next worker has
  // written its pidfile and the control socket answers again. Returns the new pid.
  ::testing::AssertionResult KillWorker9(pid_t* new_pid = nullptr);
  // Open descriptors and resident memory (KiB) of the worker, from /proc.
  size_t OpenFds() const;
  size_t RssKib() const;

  const std::string& src() const { return src_; }
  const std::string& mnt() const { return mnt_; }
  const std::string& control() const { return control_; }
  std::string Src(const std::string& name) const { return src_ + "/" + name; }
  std::string Mnt(const std::string& name) const { return mnt_ + "/" + name; }

  // One request/answer on the control socket.
  nlohmann::json Request(const nlohmann::json& req, std::chrono::milliseconds timeout = std::chrono::seconds(120));

 private:
  bool ControlAnswers() const;  // a connect to the control socket succeeds

  DaemonConfig cfg_;
  std::string base_, src_, mnt_, control_, log_;
  pid_t pid_ = -1;
};

// Polls `pred` every 50 ms until true or timeout; returns whether it became true.
bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

// Waits until migration `id` on `d` reports `phase` (or a terminal failure).
::testing::AssertionResult WaitForPhase(Daemon& d, const std::string& id, const std::string& phase,
                                        std::chrono::milliseconds timeout);
::testing::AssertionResult WaitForCompletion(Daemon& d, const std::string& id, std::chrono::milliseconds timeout);

// Byte-for-byte comparison of two files (size and content); the message names the
// first differing offset.
::testing::AssertionResult FilesEqual(const std::string& a, const std::string& b);

// Writes `size` bytes of a deterministic pattern derived from `seed`.
void WritePatternFile(const std::string& path, uint64_t size, uint64_t seed);
// Voluntary context switches of every thread of `pid` so far (/proc/PID/task/*/status):
// each time one of them went to sleep and was woken again.
uint64_t VoluntaryContextSwitches(pid_t pid);

// A key file with random bytes, mode 0600.
void WriteKeyFile(const std::string& path);

// Two network namespaces joined by a veth pair: ns_a 10.77.N.1/24, ns_b 10.77.N.2/24.
// These addresses exist only inside the namespaces this test made.
class NetnsPair {
 public:
  NetnsPair();
  ~NetnsPair();
  bool ok() const { return ok_; }
  const std::string& a() const { return a_; }
  const std::string& b() const { return b_; }
  std::string addr_a() const { return addr_a_; }
  std::string addr_b() const { return addr_b_; }
  void LinkDown();  // cut the cable
  void LinkUp();

 private:
  std::string a_, b_, veth_a_, veth_b_, addr_a_, addr_b_;
  bool ok_ = false;
};

bool RunningAsRoot();
bool HaveTool(const std::string& name);

}  // namespace migratefs::testing
