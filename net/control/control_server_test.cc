#include "net/control/control_server.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <latch>
#include <thread>

#include "migratefs/control_protocol.h"
#include "net/control/fake_migration_service.h"
#include "net/control/control_client.h"

namespace migratefs::control {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// Polls `condition` for up to `timeout`.
template <typename Condition>
bool Eventually(Condition condition, std::chrono::milliseconds timeout = 5s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return condition();
}

// The answer to `request`, or null if there was none.
json Ask(ControlClient& client, const json& request) {
  auto answer = client.Call(request, 5s);
  return answer.ok() ? answer.value() : json();
}

// The next line, or nullopt on close / timeout.
std::optional<std::string> NextLine(ControlClient& client, std::chrono::milliseconds timeout = 5s) {
  auto line = client.ReadLine(timeout);
  if (!line.ok()) return std::nullopt;
  return line.value();
}

bool Sent(ControlClient& client, std::string_view bytes) { return client.Send(bytes).ok(); }

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/migratefs-control-test.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    path_ = dir_ + "/control.sock";
  }

  void TearDown() override {
    server_.reset();
    std::string command = "rm -rf '" + dir_ + "'";
    (void)system(command.c_str());
  }

  void StartServer(ControlServerOptions options = {}) {
    auto server = ControlServer::Start(path_, &service_, options);
    ASSERT_TRUE(server.ok()) << server.error().code << ": " << server.error().message;
    server_ = std::move(server.value());
  }

  std::unique_ptr<ControlClient> Connect() {
    auto client = ControlClient::Connect(path_);
    EXPECT_TRUE(client.ok()) << client.error().message;
    return client.ok() ? std::move(client.value()) : nullptr;
  }

  std::string dir_;
  std::string path_;
  FakeMigrationService service_;
  std::unique_ptr<ControlServer> server_;
};

TEST_F(ControlServerTest, RoundTrip) {
  StartServer();
  auto client = Connect();
  json started = Ask(*client, 
      {{"op", "start"}, {"images", {"vm1.img"}}, {"target", "10.0.0.2:7000"}, {"req", 1}});
  EXPECT_EQ(started, json::parse(R"({"ok":true,"id":"m1","req":1})"));
  EXPECT_EQ(Ask(*client, {{"op", "set_network_limit"}, {"id", "m1"}, {"kbps", 20000}}),
            json::parse(R"({"ok":true})"));
  json progress = Ask(*client, {{"op", "query_progress"}, {"id", "m1"}, {"what", "network"}});
  EXPECT_EQ(progress["ok"], true);
  EXPECT_EQ(progress["phase"], "bulk");
  EXPECT_EQ(progress["network_limit_kbps"], 20000);
  json unknown = Ask(*client, {{"op", "query_completion"}, {"id", "m9"}});
  EXPECT_EQ(unknown["ok"], false);
  EXPECT_EQ(unknown["error"]["code"], "unknown_id");
}

TEST_F(ControlServerTest, HybridStartAndIncomingOverTheSocket) {
  StartServer();
  auto client = Connect();
  json started = Ask(*client, json::parse(R"({"op":"start","images":["vm1.img"],"target":"10.0.0.2:7000",)"
                                          R"("mode":"hybrid","precopy_pct":60})"));
  EXPECT_EQ(started["id"], "m1");
  EXPECT_EQ(Ask(*client, {{"op", "query_completion"}, {"id", "m1"}}),
            json::parse(R"({"ok":true,"completed":false,"hybrid":true})"));
  json refused = Ask(*client, json::parse(R"({"op":"start","images":["vm2.img"],"target":"h:1","precopy_pct":60})"));
  EXPECT_EQ(refused["error"]["code"], "bad_request");
  IncomingInfo receiving;
  receiving.image = "vm9.img";
  receiving.state = "receiving";
  service_.SetIncoming({receiving});
  json incoming = Ask(*client, {{"op", op::kIncoming}});
  EXPECT_EQ(incoming["ok"], true);
  ASSERT_EQ(incoming["incoming"].size(), 1u);
  EXPECT_EQ(incoming["incoming"][0]["state"], "receiving");
}

TEST_F(ControlServerTest, SocketIsMode0600AndRemovedOnStop) {
  mode_t old_umask = umask(0);  // the mode must not depend on the daemon's umask
  StartServer();
  umask(old_umask);
  struct stat st;
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  server_->Stop();
  EXPECT_NE(lstat(path_.c_str(), &st), 0);
  EXPECT_FALSE(ControlClient::Connect(path_).ok());
}

TEST_F(ControlServerTest, RefusesPathWithLiveServer) {
  StartServer();
  auto second = ControlServer::Start(path_, &service_, {});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, errc::kBusy);
  EXPECT_EQ(Ask(*Connect(), {{"op", "list"}})["ok"], true);  // first one unharmed
}

TEST_F(ControlServerTest, ReplacesStaleSocketButNotOtherFiles) {
  {  // a socket file nobody listens on, as a crashed daemon leaves it
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    strcpy(address.sun_path, path_.c_str());
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    close(fd);
  }
  StartServer();
  EXPECT_EQ(Ask(*Connect(), {{"op", "list"}})["ok"], true);
  server_.reset();

  std::ofstream(path_) << "precious";
  auto refused = ControlServer::Start(path_, &service_, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, errc::kBusy);
  std::ifstream kept(path_);
  std::string content;
  kept >> content;
  EXPECT_EQ(content, "precious");
}

TEST_F(ControlServerTest, CreatesMissingParentDirectory) {
  path_ = dir_ + "/sub/control.sock";
  StartServer();
  EXPECT_EQ(Ask(*Connect(), {{"op", "list"}})["ok"], true);
}

TEST_F(ControlServerTest, PipelinedAnswersComeInOrder) {
  StartServer();
  auto client = Connect();
  ASSERT_EQ(Ask(*client, {{"op", "start"}, {"images", {"a"}}, {"target", "h:1"}})["id"], "m1");
  // Mix fast ops, a slow one (verify, on the worker pool) and errors in one write.
  std::string batch;
  for (int i = 0; i < 60; ++i) {
    json request;
    switch (i % 4) {
      case 0: request = {{"op", "list"}}; break;
      case 1: request = {{"op", "verify"}, {"id", "m1"}}; break;
      case 2: request = {{"op", "nope"}}; break;
      case 3: request = {{"op", "query_completion"}, {"id", "m1"}}; break;
    }
    request["req"] = i;
    batch += request.dump() + "\n";
  }
  batch += "\n  \n";  // blank lines are not requests
  ASSERT_TRUE(Sent(*client, batch));
  for (int i = 0; i < 60; ++i) {
    auto line = NextLine(*client);
    ASSERT_TRUE(line) << i;
    json answer = json::parse(*line);
    EXPECT_EQ(answer["req"], i);
    EXPECT_EQ(answer["ok"], i % 4 != 2) << *line;
  }
  EXPECT_EQ(Ask(*client, {{"op", "list"}, {"req", "last"}})["req"], "last");
}

TEST_F(ControlServerTest, OverlongLineIsRefusedAndNothingCalled) {
  StartServer();
  auto client = Connect();
  std::string line = R"({"op":"set_network_limit","id":"m1","kbps":1,"pad":")" +
                     std::string(65 * 1024, 'x') + "\"}\n";
  Sent(*client, line);  // the server may close before it has read everything
  auto answer = NextLine(*client);
  ASSERT_TRUE(answer);
  EXPECT_EQ(json::parse(*answer)["error"]["code"], "too_large");
  EXPECT_TRUE(client->WaitForClose(2s));
  EXPECT_TRUE(service_.calls().empty());
}

TEST_F(ControlServerTest, OverlongLineWithoutNewlineIsRefused) {
  StartServer();
  auto client = Connect();
  Sent(*client, std::string(kMaxRequestLineBytes + 10, '{'));
  auto answer = NextLine(*client);
  ASSERT_TRUE(answer);
  EXPECT_EQ(json::parse(*answer)["error"]["code"], "too_large");
  EXPECT_TRUE(client->WaitForClose(2s));
}

TEST_F(ControlServerTest, BadRequestsChangeNothing) {
  StartServer();
  auto client = Connect();
  for (const char* line :
       {"garbage", "{\"op\":\"set_network_limit\",\"id\":\"m1\",\"kbps\":-5}",
        "{\"op\":\"set_disk_limit\",\"id\":\"m1\"}", "{\"op\":\"cancel\",\"id\":\"m1\",\"x\":1}",
        "[1,2]", "{\"op\":\"frobnicate\"}"}) {
    ASSERT_TRUE(Sent(*client, std::string(line) + "\n"));
    auto answer = NextLine(*client);
    ASSERT_TRUE(answer) << line;
    json parsed = json::parse(*answer);
    EXPECT_EQ(parsed["ok"], false) << line;
    EXPECT_TRUE(parsed["error"]["code"].is_string());
    EXPECT_TRUE(parsed["error"]["message"].is_string());
  }
  EXPECT_TRUE(service_.calls().empty());
  EXPECT_EQ(Ask(*client, {{"op", "list"}})["ok"], true);  // still served
}

TEST_F(ControlServerTest, StalledHalfLineIsDroppedOthersUnaffected) {
  ControlServerOptions options;
  options.line_timeout = 300ms;
  StartServer(options);
  auto staller = Connect();
  ASSERT_TRUE(Sent(*staller, R"({"op":"set_disk_limit","id":"m1","kb)"));
  auto other = Connect();
  auto began = std::chrono::steady_clock::now();
  // The other client keeps working while the staller hangs.
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(Ask(*other, {{"op", "list"}})["ok"], true);
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(staller->WaitForClose(3s));
  EXPECT_GE(std::chrono::steady_clock::now() - began, 250ms);
  EXPECT_EQ(Ask(*other, {{"op", "list"}})["ok"], true);
  for (const std::string& call : service_.calls()) EXPECT_EQ(call, "List");
}

TEST_F(ControlServerTest, TricklingBytesDoNotExtendTheLineTimeout) {
  ControlServerOptions options;
  options.line_timeout = 300ms;
  StartServer(options);
  auto client = Connect();
  bool closed = false;
  for (int i = 0; i < 40 && !closed; ++i) {  // one byte per 50 ms: 2 s if never dropped
    closed = !Sent(*client, "x");
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(closed || client->WaitForClose(500ms));
}

TEST_F(ControlServerTest, IdleConnectionIsClosedAfterIdleTimeout) {
  ControlServerOptions options;
  options.idle_timeout = 200ms;
  StartServer(options);
  auto client = Connect();
  EXPECT_EQ(Ask(*client, {{"op", "list"}})["ok"], true);
  EXPECT_TRUE(client->WaitForClose(3s));
}

TEST_F(ControlServerTest, SlowFinishDoesNotBlockOtherClients) {
  StartServer();
  auto first = Connect();
  ASSERT_EQ(Ask(*first, {{"op", "start"}, {"images", {"a"}}, {"target", "h:1"}})["id"], "m1");
  service_.BlockSlowCalls();
  auto finisher = Connect();
  ASSERT_TRUE(Sent(*finisher, R"({"op":"finish","id":"m1"})" "\n"));
  auto verifier = Connect();
  ASSERT_TRUE(Sent(*verifier, R"({"op":"verify","id":"m1"})" "\n"));
  EXPECT_FALSE(NextLine(*finisher, 100ms));  // still waiting on the service
  EXPECT_EQ(Ask(*first, {{"op", "status"}, {"id", "m1"}})["ok"], true);
  service_.Unblock();
  auto finished = NextLine(*finisher);
  ASSERT_TRUE(finished);
  EXPECT_EQ(json::parse(*finished)["ok"], true);
  auto verified = NextLine(*verifier);
  ASSERT_TRUE(verified);
  EXPECT_EQ(json::parse(*verified)["identical"], true);
}

TEST_F(ControlServerTest, ProfileRunsOffTheIoThreadAndHasItsOwnPool) {
  ControlServerOptions options;
  options.long_threads = 2;
  StartServer(options);
  auto first = Connect();
  ASSERT_EQ(Ask(*first, {{"op", "start"}, {"images", {"a"}}, {"target", "h:1"}})["id"], "m1");
  service_.BlockSlowCalls();
  auto p1 = Connect(), p2 = Connect(), p3 = Connect();
  ASSERT_TRUE(Sent(*p1, R"({"op":"profile","images":["x.img"],"seconds":60})" "\n"));
  ASSERT_TRUE(Sent(*p2, R"({"op":"profile","images":["y.img"],"seconds":60})" "\n"));
  ASSERT_TRUE(Eventually([&] {
    auto calls = service_.calls();
    return std::count_if(calls.begin(), calls.end(), [](const std::string& c) { return c.rfind("Profile", 0) == 0; }) == 2;
  })) << ::testing::PrintToString(service_.calls());
  // Both long slots are taken: a third profile is refused at once, not queued for an hour.
  json third = Ask(*p3, json::parse(R"({"op":"profile","images":["z.img"],"seconds":60})"));
  EXPECT_EQ(third["error"]["code"], "busy") << third.dump();
  // The I/O thread and the finish/verify pool are free meanwhile.
  EXPECT_EQ(Ask(*first, {{"op", "status"}, {"id", "m1"}})["ok"], true);
  auto finisher = Connect();
  ASSERT_TRUE(Sent(*finisher, R"({"op":"finish","id":"m1"})" "\n"));
  EXPECT_FALSE(NextLine(*p1, 100ms));
  service_.Unblock();
  auto profiled = NextLine(*p1);
  ASSERT_TRUE(profiled);
  EXPECT_EQ(json::parse(*profiled)["profile"]["images"][0]["name"], "x.img");
  ASSERT_TRUE(NextLine(*p2));
  ASSERT_TRUE(NextLine(*finisher));
  // The slots are free again; predict uses the last profile.
  EXPECT_EQ(Ask(*p3, json::parse(R"({"op":"profile","images":["z.img"],"seconds":1})"))["ok"], true);
  json predicted = Ask(*p3, json::parse(R"({"op":"predict","images":["x.img","z.img"],"net_kbps":20000,"step":50})"));
  EXPECT_EQ(predicted["ok"], true) << predicted.dump();
  EXPECT_EQ(predicted["rows"].size(), 3u);
}

TEST_F(ControlServerTest, ThousandClientsAtOnce) {
  rlimit limit{8192, 8192};
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0) << "needs root or a high hard limit";
  ControlServerOptions options;
  options.max_connections = 256;
  StartServer(options);

  constexpr int kClients = 1000;
  constexpr int kThreads = 8;
  std::atomic<int> answered{0}, refused_busy{0}, closed_cleanly{0}, broken{0};
  // All 1000 stay open until every one has its answer, so the cap is really reached.
  std::latch all_connected(kThreads);
  std::latch all_read(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      std::vector<std::unique_ptr<ControlClient>> clients;
      for (int i = 0; i < kClients / kThreads; ++i) {
        auto client = ControlClient::Connect(path_);
        if (client.ok()) {
          clients.push_back(std::move(client.value()));
        } else {
          ++broken;
        }
      }
      all_connected.arrive_and_wait();
      for (auto& client : clients) {
        Sent(*client, R"({"op":"list"})" "\n");  // may fail: a refused client is closed
      }
      for (auto& client : clients) {
        auto line = client->ReadLine(10s);
        if (!line.ok()) {
          ++(line.error().code == ControlClient::kDisconnected ? closed_cleanly : broken);
          continue;
        }
        json answer = json::parse(line.value(), nullptr, false);
        if (answer.is_object() && answer["ok"] == true) {
          ++answered;
        } else if (answer.is_object() && answer["error"]["code"] == "busy") {
          ++refused_busy;
        } else {
          ++broken;
        }
      }
      all_read.arrive_and_wait();
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(broken, 0);
  EXPECT_EQ(answered + refused_busy + closed_cleanly, kClients)
      << answered << " answered, " << refused_busy << " busy, " << closed_cleanly << " closed";
  EXPECT_EQ(answered, 256);  // the first 256 are served, the rest refused
  EXPECT_EQ(refused_busy, kClients - 256);
  // All of them are gone now; the server keeps serving and frees every slot.
  EXPECT_EQ(Ask(*Connect(), {{"op", "list"}})["ok"], true);
  EXPECT_TRUE(Eventually([&] { return server_->connection_count() == 0; }));
}

TEST_F(ControlServerTest, EventsAreStreamedInOrder) {
  StartServer();
  auto client = Connect();
  ASSERT_TRUE(Sent(*client, R"({"op":"events","req":"ev"})" "\n"));
  auto ack = NextLine(*client);
  ASSERT_TRUE(ack);
  EXPECT_EQ(json::parse(*ack), json::parse(R"({"ok":true,"events":true,"req":"ev"})"));
  ASSERT_TRUE(Eventually([&] { return service_.subscriber_count() == 1; }));

  for (int i = 0; i < 200; ++i) {
    service_.Emit(Event{"m1", "phase", "dirty", "round " + std::to_string(i), 1.0 * i});
  }
  for (int i = 0; i < 200; ++i) {
    auto line = NextLine(*client);
    ASSERT_TRUE(line) << i;
    json event = json::parse(*line);
    EXPECT_EQ(event["event"], "phase");
    EXPECT_EQ(event["id"], "m1");
    EXPECT_EQ(event["detail"], "round " + std::to_string(i));
  }
  client.reset();
  EXPECT_TRUE(Eventually([&] { return service_.subscriber_count() == 0; }));
}

TEST_F(ControlServerTest, SlowEventsReaderIsDroppedWithoutBlockingTheService) {
  ControlServerOptions options;
  options.max_queued_events = 8;
  StartServer(options);
  auto client = Connect();
  ASSERT_TRUE(Sent(*client, R"({"op":"events"})" "\n"));
  ASSERT_TRUE(NextLine(*client));
  ASSERT_TRUE(Eventually([&] { return service_.subscriber_count() == 1; }));

  // The client reads nothing; the socket buffers fill and the queue overflows. Emit must
  // never wait for the reader.
  std::string detail(16 * 1024, 'd');
  auto began = std::chrono::steady_clock::now();
  for (int i = 0; i < 2000 && service_.subscriber_count() > 0; ++i) {
    service_.Emit(Event{"m1", "phase", "dirty", detail, 0});
  }
  EXPECT_LT(std::chrono::steady_clock::now() - began, 5s);
  EXPECT_TRUE(Eventually([&] { return service_.subscriber_count() == 0; }));

  // What it reads now: some events, then the final error line, then the end.
  std::optional<std::string> last;
  while (auto line = NextLine(*client, 2s)) last = line;
  ASSERT_TRUE(last);
  EXPECT_EQ(json::parse(*last)["error"]["code"], "too_large");

  // Other clients never noticed.
  EXPECT_EQ(Ask(*Connect(), {{"op", "list"}})["ok"], true);
}

TEST_F(ControlServerTest, StopClosesEverything) {
  StartServer();
  auto plain = Connect();
  auto events = Connect();
  ASSERT_TRUE(Sent(*events, R"({"op":"events"})" "\n"));
  ASSERT_TRUE(NextLine(*events));
  server_->Stop();
  EXPECT_TRUE(plain->WaitForClose(2s));
  EXPECT_TRUE(events->WaitForClose(2s));
  EXPECT_EQ(service_.subscriber_count(), 0u);
  server_->Stop();  // idempotent
}

}  // namespace
}  // namespace migratefs::control
