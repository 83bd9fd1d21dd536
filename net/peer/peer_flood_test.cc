// Hostile connections against a real PeerServer on loopback: peers that never
// authenticate must neither pin memory nor keep a legitimate peer out, and running
// out of file descriptors must not bring the listener down.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <random>
#include <thread>
#include <vector>

#include "net/fd_io.h"
#include "net/peer/frame.h"
#include "net/peer/peer_client.h"
#include "net/peer/peer_server.h"
#include "net/peer/peer_test_util.h"

namespace migratefs::net {
namespace {

using namespace migratefs::net::testing;  // NOLINT
using Clock = std::chrono::steady_clock;

constexpr char kKey[] = "flood-test-key";
constexpr uint32_t kBlock = 512 * 1024;

size_t RssBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;  // NOLINT(runtime/int): statm's format
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE)) : 0;
}

// A TCP connection to 127.0.0.1:port, or -1.
int Dial(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// The 48-byte header of a data frame announcing the largest payload; the payload is
// never sent.
std::string HugeDataHeader() {
  FrameHeader h;
  h.type = wire::FrameType::kData;
  h.length = wire::kMaxDataLength;
  h.payload_len = wire::kMaxDataLength;
  uint8_t raw[wire::kHeaderSize];
  EncodeHeaderWithPayloadHash(h, 0, raw);
  return std::string(reinterpret_cast<char*>(raw), sizeof raw);
}

// True when the peer closes `fd` (EOF or reset) before `deadline`; whatever it sends
// first (an error frame) is skipped.
bool ClosedBy(int fd, Clock::time_point deadline) {
  char buf[4096];
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
  }
}

// Connects with the right key, sends `data` as one image and finishes it. Retries the
// connection as a migration's reconnect would, until `deadline`; each failed connection
// attempt is added to `refused`.
Status MigrateOneImage(uint16_t port, const std::string& name, const std::string& data, Clock::time_point deadline,
                       std::vector<Error>* refused) {
  Error last = MakeError(errc::kPeerUnreachable, "no attempt made");
  int attempts = 0;
  while (Clock::now() < deadline) {
    ++attempts;
    PeerClientOptions o;
    o.target = "127.0.0.1:" + std::to_string(port);
    o.key = kKey;
    o.connect_timeout = std::chrono::seconds(5);
    auto c = PeerClient::Connect(o);
    if (!c.ok()) {
      last = c.error();
      refused->push_back(last);
      std::printf("attempt %d: %s: %s\n", attempts, last.code.c_str(), last.message.c_str());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    auto img = c.value()->OpenImage(name, data.size(), kBlock, false);
    if (!img.ok()) return img.error();
    for (size_t off = 0; off < data.size(); off += kBlock) {
      Status st = SendDataSync(*c.value(), img.value().handle, off, data.substr(off, kBlock));
      if (!st.ok()) return st;
    }
    return c.value()->FinishImage(img.value().handle);
  }
  return MakeError(last.code.c_str(), "gave up after " + std::to_string(attempts) + " attempts: " + last.message);
}

class PeerFloodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dirfd_ = ::open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(dirfd_, 0);
    PeerServerOptions o;
    o.listen = "127.0.0.1:0";
    o.key = kKey;
    o.src_dirfd = dirfd_;  // the daemon's defaults otherwise: 64 sessions, 5 s handshake
    auto s = PeerServer::Start(o, nullptr);
    ASSERT_TRUE(s.ok()) << s.error().message;
    server_ = std::move(s.value());
  }
  void TearDown() override {
    server_.reset();
    ::close(dirfd_);
  }

  TempDir dir_;
  int dirfd_ = -1;
  std::unique_ptr<PeerServer> server_;
};

// 64 connections that each send only a data header announcing 16 MiB used to raise
// the target's RSS by 1 GiB for the whole handshake timeout. Now each is refused from
// its header, at once, and costs next to nothing.
TEST_F(PeerFloodTest, OversizedHeadersBeforeAuthPinNoMemory) {
  const size_t before = RssBytes();
  const std::string hdr = HugeDataHeader();
  std::vector<int> fds;
  for (int i = 0; i < 64; ++i) {
    const int fd = Dial(server_->port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(WriteAllFd(fd, hdr.data(), hdr.size(), Clock::now() + std::chrono::seconds(3)).ok());
    fds.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // time to allocate, were it to
  const size_t during = RssBytes();
  EXPECT_LT(during, before + (100u << 20)) << "RSS grew from " << before << " to " << during << " bytes";
  // Each is dropped well before the 5 s handshake timeout.
  const auto deadline = Clock::now() + std::chrono::seconds(3);
  int closed = 0;
  for (int fd : fds) {
    closed += ClosedBy(fd, deadline) ? 1 : 0;
    ::close(fd);
  }
  EXPECT_EQ(closed, 64);
}

// Floods the server until stopped: mostly silent connections, some sending garbage,
// an oversized header, or a valid hello (the furthest a stranger gets without the key).
class Flood {
 public:
  Flood(uint16_t port, int threads) {
    for (int t = 0; t < threads; ++t) threads_.emplace_back([this, port, t] { Run(port, t); });
  }
  ~Flood() { Stop(); }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  uint64_t connections() const { return made_.load(); }

 private:
  void Run(uint16_t port, int seed) {
    std::mt19937 rng(static_cast<unsigned>(seed));
    const std::string huge = HugeDataHeader();
    HelloPayload hp;
    hp.auth_mode = wire::kAuthHmacSha256;
    FrameHeader hh;
    hh.type = wire::FrameType::kHello;
    const std::string hello = EncodeFrame(hh, EncodeHello(hp));
    // Like a real attacker, the flood holds every connection until the server drops
    // it; only those are closed here (and, should the server hold on to thousands, the
    // oldest, to stay within this process's descriptor limit).
    std::vector<pollfd> held;
    for (uint64_t i = 0; !stop_; ++i) {
      const int fd = Dial(port);
      if (fd < 0) continue;
      made_.fetch_add(1);
      switch (i % 8) {
        case 6: {  // random bytes, then silence
          std::string junk(1 + rng() % 200, '\0');
          for (char& c : junk) c = static_cast<char>(rng());
          (void)!::send(fd, junk.data(), junk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
          break;
        }
        case 7:  // a data header announcing 16 MiB, then silence
          (void)!::send(fd, huge.data(), huge.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
          break;
        case 5:  // a valid hello (no key needed for that), then silence
          (void)!::send(fd, hello.data(), hello.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
          break;
        default:  // silent
          break;
      }
      held.push_back(pollfd{fd, POLLIN, 0});
      if (i % 16 == 15) {
        ReapDropped(held);
        // Pace the flood a little: far above the 200 connections/s seen in the field,
        // without overrunning the kernel's listen backlog (no server design helps there).
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    for (const pollfd& p : held) ::close(p.fd);
  }

  // Closes the connections the server has dropped (or answered: it only answers with
  // an error before dropping).
  static void ReapDropped(std::vector<pollfd>& held) {
    if (::poll(held.data(), held.size(), 0) > 0) {
      size_t keep = 0;
      for (const pollfd& p : held) {
        if (p.revents != 0) {
          ::close(p.fd);
        } else {
          held[keep++] = pollfd{p.fd, POLLIN, 0};
        }
      }
      held.resize(keep);
    }
    while (held.size() > 5000) {
      ::close(held.front().fd);
      held.erase(held.begin());
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> made_{0};
  std::vector<std::thread> threads_;
};

// Every silent connection used to hold one of the 64 session slots for the 5 s
// handshake timeout, so a flood kept a real migration's reconnect refused with busy
// for as long as it lasted. Now strangers never make a peer that proves its key hear
// busy (only sessions count against max_sessions), and it gets through at once. A
// retry is allowed for one case only: on a badly overloaded machine a stranger slot
// can turn over before the peer's own handshake thread gets to run (peer_unreachable).
TEST_F(PeerFloodTest, FloodDoesNotStarveLegitimatePeer) {
  Flood flood(server_->port(), 2);
  std::this_thread::sleep_for(std::chrono::seconds(1));  // the flood is in full swing
  const uint64_t made_before = flood.connections();
  const std::string data = Pattern(8 * kBlock, 7);
  std::vector<Error> refused;
  const auto t0 = Clock::now();
  Status st = MigrateOneImage(server_->port(), "legit.img", data, t0 + std::chrono::seconds(20), &refused);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  const uint64_t made_during = flood.connections() - made_before;
  flood.Stop();
  size_t busy = 0;
  std::string first_busy;
  for (const Error& e : refused) {
    if (e.code == errc::kBusy && busy++ == 0) first_busy = e.message;
  }
  EXPECT_EQ(busy, 0u) << "refused with busy during the flood, first: " << first_busy;
  ASSERT_TRUE(st.ok()) << st.error().code << ": " << st.error().message;
  EXPECT_EQ(ReadFileBytes(dir_ / "legit.img"), data);
  EXPECT_GT(flood.connections(), 300u) << "not much of a flood";
  std::printf("legit peer finished in %lld ms, %zu refused attempt(s); flood: %llu connections, %llu during\n",
              static_cast<long long>(took.count()), refused.size(),  // NOLINT(runtime/int)
              static_cast<unsigned long long>(flood.connections()),  // NOLINT(runtime/int)
              static_cast<unsigned long long>(made_during));  // NOLINT(runtime/int)
}

// Stopping a server must not race its own timers: a sweep wait that has expired just
// before the stop must not re-arm itself, or the destructor waits forever (a first
// version of the sweep did that, about once in 50 stops).
TEST(PeerServerStopTest, StopsPromptlyWhateverItsTimersAreDoing) {
  TempDir dir;
  const int dirfd = ::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dirfd, 0);
  std::mt19937 rng(1);
  for (int i = 0; i < 300; ++i) {
    PeerServerOptions o;
    o.listen = "127.0.0.1:0";
    o.key = kKey;
    o.src_dirfd = dirfd;
    o.handshake_timeout = std::chrono::milliseconds(40);  // sweeps every 10 ms
    auto s = PeerServer::Start(o, nullptr);
    ASSERT_TRUE(s.ok()) << s.error().message;
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
    // Stopped on a thread of its own, so a hang fails the test instead of hanging it
    // (the stuck thread is left behind on purpose; the process exit ends it).
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> stopped = done->get_future();
    std::thread([srv = std::move(s.value()), done]() mutable {
      srv.reset();
      done->set_value();
    }).detach();
    ASSERT_EQ(stopped.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "stop hung, round " << i;
  }
  ::close(dirfd);
}

// The target runs in a child with a low RLIMIT_NOFILE that the test fills and frees on
// command, so the server meets EMFILE both in accept() and while setting a session up.
class FdStarvedServer {
 public:
  explicit FdStarvedServer(const std::string& dir) {
    int up[2], down[2];
    EXPECT_EQ(::pipe(up), 0);
    EXPECT_EQ(::pipe(down), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(up[0]);
      ::close(down[1]);
      Child(dir, down[0], up[1]);
      ::_exit(0);
    }
    ::close(up[1]);
    ::close(down[0]);
    to_child_ = down[1];
    from_child_ = up[0];
    EXPECT_EQ(::read(from_child_, &port_, sizeof port_), static_cast<ssize_t>(sizeof port_));
  }
  ~FdStarvedServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(to_child_);
    ::close(from_child_);
  }
  uint16_t port() const { return port_; }
  // 'f' n: fill the descriptor table, leaving n free. 'r': free all of it again.
  bool Command(char what, unsigned char n = 0) {
    const char cmd[2] = {what, static_cast<char>(n)};
    char ack = 0;
    return ::write(to_child_, cmd, 2) == 2 && ::read(from_child_, &ack, 1) == 1 && ack == 'k';
  }
  bool Alive() { return pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }

 private:
  static void Child(const std::string& dir, int in, int out) {
    rlimit rl{};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 128;
    ::setrlimit(RLIMIT_NOFILE, &rl);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    PeerServerOptions o;
    o.listen = "127.0.0.1:0";
    o.key = kKey;
    o.src_dirfd = dfd;
    auto s = PeerServer::Start(o, nullptr);
    uint16_t port = s.ok() ? s.value()->port() : 0;
    (void)!::write(out, &port, sizeof port);
    std::vector<int> fill;
    char cmd[2];
    while (::read(in, cmd, 2) == 2) {
      if (cmd[0] == 'f') {
        for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) fill.push_back(fd);
        for (int i = 0; i < static_cast<unsigned char>(cmd[1]) && !fill.empty(); ++i) {
          ::close(fill.back());
          fill.pop_back();
        }
      } else {
        for (int fd : fill) ::close(fd);
        fill.clear();
      }
      (void)!::write(out, "k", 1);
    }
  }

  pid_t pid_ = -1;
  int to_child_ = -1, from_child_ = -1;
  uint16_t port_ = 0;
};

// Out of descriptors, the listener neither dies nor spins: accept() fails (EMFILE) and
// is retried; a connection accepted with the last descriptor, whose session then
// cannot get its own (Asio's epoll/eventfd), is refused alone; once descriptors are
// free again a real peer is served. Used to end in std::terminate.
TEST(PeerFdLimitTest, ServerSurvivesDescriptorExhaustion) {
  TempDir dir;
  FdStarvedServer child(dir.path());
  ASSERT_NE(child.port(), 0);
  HelloPayload hello;
  hello.auth_mode = wire::kAuthHmacSha256;
  hello.features = wire::kFeaturesSupported;
  FrameHeader h;
  h.type = wire::FrameType::kHello;
  const std::string hello_frame = EncodeFrame(h, EncodeHello(hello));

  // No descriptor left: accept() itself fails, the connection waits in the backlog.
  ASSERT_TRUE(child.Command('f', 0));
  const int waiting = Dial(child.port());
  ASSERT_GE(waiting, 0);
  ASSERT_TRUE(WriteAllFd(waiting, hello_frame.data(), hello_frame.size(), Clock::now() + std::chrono::seconds(3)).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_TRUE(child.Alive());

  // One descriptor: accept() gets it, the session's own setup does not.
  ASSERT_TRUE(child.Command('f', 1));
  EXPECT_TRUE(ClosedBy(waiting, Clock::now() + std::chrono::seconds(5)));
  ::close(waiting);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(child.Alive()) << "the peer server died on EMFILE";

  // Descriptors again: business as usual.
  ASSERT_TRUE(child.Command('r'));
  const std::string data = Pattern(2 * kBlock, 3);
  std::vector<Error> refused;
  Status st = MigrateOneImage(child.port(), "after.img", data, Clock::now() + std::chrono::seconds(20), &refused);
  ASSERT_TRUE(st.ok()) << st.error().code << ": " << st.error().message;
  EXPECT_EQ(ReadFileBytes(dir / "after.img"), data);
  EXPECT_TRUE(child.Alive());
}

}  // namespace
}  // namespace migratefs::net
