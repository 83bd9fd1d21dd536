// Helpers for the fs integration tests: temporary trees, an in-process mount (the
// FUSE loop runs on a thread of the test binary, so tests can attach hooks), and
// running the migratefs binary and shell commands.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fs/session.h"

namespace migratefs::fs::testing {

// mkdtemp under /tmp (ext4 here: O_DIRECT, holes and xattrs work), removed at the end.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// `base/src` served at `base/mnt`, plus `base/ref`: a plain directory on the same
// file system on which tests repeat every call to compare results and errno.
class InProcessMount {
 public:
  // `options` is an -o list, e.g. "allow_other,nowriteback".
  explicit InProcessMount(const std::string& options = "allow_other");
  ~InProcessMount();  // unmounts, even if the test failed or left files open

  const std::string& src() const { return src_; }
  const std::string& mnt() const { return mnt_; }
  const std::string& ref() const { return ref_; }
  const std::string& base() const { return dir_.path(); }
  Session& session() { return *session_; }

 private:
  TempDir dir_;
  std::string src_, mnt_, ref_;
  std::unique_ptr<Session> session_;
  std::thread loop_;
};

// True if /proc/self/mounts has a mount at `dir` (absolute path).
bool IsMounted(const std::string& dir);
// Unmounts `dir` if mounted (forcing the FUSE connection down if files are open).
void ForceUnmount(const std::string& dir);

struct Cmd {
  int status = -1;  // exit status, or 128+signal
  std::string out;  // stdout and stderr together
};
// Runs `sh -c command` with a timeout in seconds.
Cmd Shell(const std::string& command, int timeout_s = 60);
// Quotes for sh.
std::string Q(const std::string& s);
// The migratefs binary under test.
std::string Binary();

// Bytes of a file, or "" if it cannot be read.
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& data);
// Deterministic pseudo-random bytes.
std::string Pattern(size_t n, uint32_t seed);

}  // namespace migratefs::fs::testing
