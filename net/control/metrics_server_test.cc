#include "net/control/metrics_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/control/fake_migration_service.h"

namespace migratefs::control {
namespace {

// Sends `request` to 127.0.0.1:port and returns everything the server answers.
std::string HttpExchange(uint16_t port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return "";
  }
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  (void)send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string answer;
  char chunk[4096];
  for (ssize_t n; (n = recv(fd, chunk, sizeof(chunk), 0)) > 0;) answer.append(chunk, n);
  close(fd);
  return answer;
}

MigrationInfo Example() {
  MigrationInfo m;
  m.id = "m1";
  m.images = {"vm1.img", "we\"ird.img"};
  m.target = "10.0.0.2:7000";
  m.progress.phase = "dirty";
  m.progress.bytes_sent = 123456789;
  m.progress.dirty_blocks = 7;
  m.progress.network_kbps = 1500.5;
  m.progress.network_limit_kbps = 20000;
  m.progress.eta_s = -1;
  return m;
}

TEST(RenderMetricsTest, FamiliesAndSamples) {
  std::string text = RenderMetrics({Example()});
  for (const char* expected : {
           "# TYPE migratefs_bytes_sent_total counter\n",
           "migratefs_bytes_sent_total{id=\"m1\"} 123456789\n",
           "migratefs_dirty_blocks{id=\"m1\"} 7\n",
           "migratefs_phase{id=\"m1\",phase=\"dirty\"} 1\n",
           "migratefs_phase{id=\"m1\",phase=\"bulk\"} 0\n",
           "migratefs_network_limit_kbps{id=\"m1\"} 20000\n",
           "migratefs_disk_limit_kbps{id=\"m1\"} 0\n",
           "migratefs_network_kbps{id=\"m1\"} 1500.5\n",
           "migratefs_eta_seconds{id=\"m1\"} -1\n",
           "images=\"vm1.img,we\\\"ird.img\"",
       }) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected << "\n" << text;
  }
  EXPECT_EQ(RenderMetrics({}).find("{"), std::string::npos);  // families, no samples
}

TEST(RenderMetricsTest, HybridCounters) {
  MigrationInfo m = Example();
  m.progress.phase = "postcopy";
  m.progress.mode = "hybrid";
  m.progress.blocks_remote = 42;
  m.progress.bytes_pulled = 7340032;
  m.progress.bytes_fetched_on_demand = 1048576;
  std::string text = RenderMetrics({m, Example()});
  for (const char* expected : {
           "# TYPE migratefs_blocks_remote gauge\n",
           "migratefs_blocks_remote{id=\"m1\"} 42\n",
           "# TYPE migratefs_bytes_pulled_total counter\n",
           "migratefs_bytes_pulled_total{id=\"m1\"} 7340032\n",
           "# TYPE migratefs_bytes_fetched_on_demand_total counter\n",
           "migratefs_bytes_fetched_on_demand_total{id=\"m1\"} 1048576\n",
           "migratefs_hybrid{id=\"m1\"} 1\n",
           "migratefs_hybrid{id=\"m1\"} 0\n",  // the pre-copy one
           "migratefs_phase{id=\"m1\",phase=\"postcopy\"} 1\n",
       }) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected << "\n" << text;
  }
}

TEST(MetricsServerTest, ServesMetricsAndNothingElse) {
  FakeMigrationService service;
  ASSERT_TRUE(service.Start({{"vm1.img"}, "h:1", 20000, 0}).ok());
  auto server = MetricsServer::Start(HostPort{"127.0.0.1", 0}, &service);
  ASSERT_TRUE(server.ok()) << server.error().message;
  uint16_t port = server.value()->port();
  ASSERT_NE(port, 0);

  std::string ok = HttpExchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ok.rfind("HTTP/1.0 200 OK\r\n", 0), 0u) << ok;
  EXPECT_NE(ok.find("text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(ok.find("migratefs_network_limit_kbps{id=\"m1\"} 20000"), std::string::npos) << ok;

  for (const char* request : {"GET / HTTP/1.0\r\n\r\n", "POST /metrics HTTP/1.0\r\n\r\n",
                              "GET /metrics/../x HTTP/1.0\r\n\r\n", "garbage\r\n\r\n"}) {
    std::string answer = HttpExchange(port, request);
    EXPECT_EQ(answer.rfind("HTTP/1.0 404", 0), 0u) << request << " -> " << answer;
  }
  // A head over 8 KiB is not answered.
  EXPECT_EQ(HttpExchange(port, "GET /metrics HTTP/1.0\r\nX: " + std::string(9000, 'x')), "");

  for (const std::string& call : service.calls()) {
    EXPECT_TRUE(call == "List" || call.rfind("Start", 0) == 0) << call;  // read-only
  }
  server.value()->Stop();
  EXPECT_EQ(HttpExchange(port, "GET /metrics HTTP/1.0\r\n\r\n"), "");
}

TEST(MetricsServerTest, RejectsBadAddress) {
  FakeMigrationService service;
  EXPECT_FALSE(MetricsServer::Start("nohost", &service).ok());
  EXPECT_FALSE(MetricsServer::Start("127.0.0.1:0", &service).ok());  // port 0 only via HostPort
}

}  // namespace
}  // namespace migratefs::control
