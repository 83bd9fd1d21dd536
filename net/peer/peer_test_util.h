// Helpers shared by the peer client/server tests: temp dirs, a recording observer,
// and synchronous wrappers around the asynchronous Send* calls.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "net/peer/peer_client.h"
#include "net/peer/peer_server.h"

namespace migratefs::net::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mfsnet.XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct ObserverEvent {
  std::string what;  // "receiving" | "ended"
  std::string name;
  bool complete = false;
};

class RecordingObserver : public ReceiveObserver {
 public:
  void OnReceiving(const std::string& name, dev_t, ino_t) override {
    std::lock_guard<std::mutex> lk(mu_);
    events_.push_back({"receiving", name, false});
  }
  void OnReceiveEnded(const std::string& name, dev_t, ino_t, bool complete) override {
    std::lock_guard<std::mutex> lk(mu_);
    events_.push_back({"ended", name, complete});
  }
  std::vector<ObserverEvent> events() {
    std::lock_guard<std::mutex> lk(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::vector<ObserverEvent> events_;
};

inline std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// Waits for an AckFn-style completion.
class AckWaiter {
 public:
  AckFn fn() {
    return [this](const Status& s) { p_.set_value(s); };
  }
  Status Wait() { return f_.get(); }

 private:
  std::promise<Status> p_;
  std::future<Status> f_ = p_.get_future();
};

inline Status SendDataSync(PeerClient& c, uint32_t h, uint64_t off, const std::string& data) {
  AckWaiter w;
  c.SendData(h, off, data.data(), static_cast<uint32_t>(data.size()), w.fn());
  return w.Wait();
}
inline Status SendZeroSync(PeerClient& c, uint32_t h, uint64_t off, uint64_t len) {
  AckWaiter w;
  c.SendZero(h, off, len, w.fn());
  return w.Wait();
}
inline Status SendResizeSync(PeerClient& c, uint32_t h, uint64_t size) {
  AckWaiter w;
  c.SendResize(h, size, w.fn());
  return w.Wait();
}
inline Status SendSyncSync(PeerClient& c, uint32_t h) {
  AckWaiter w;
  c.SendSync(h, w.fn());
  return w.Wait();
}

inline std::string Pattern(size_t len, uint32_t seed) {
  std::string s(len, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < len; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s[i] = static_cast<char>(x);
  }
  return s;
}

}  // namespace migratefs::net::testing
