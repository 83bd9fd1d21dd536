// Runs the migratectl binary against a real control server backed by the fake service.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <thread>

#include "broker/ctl/exit_codes.h"
#include "net/control/control_server.h"
#include "net/control/fake_migration_service.h"

namespace migratefs::ctl {
namespace {

using control::ControlServer;
using control::FakeMigrationService;
using nlohmann::json;
using namespace std::chrono_literals;

struct Outcome {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

class MigratectlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/migratectl-test.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    socket_ = dir_ + "/control.sock";
    auto server = ControlServer::Start(socket_, &service_, {});
    ASSERT_TRUE(server.ok()) << server.error().message;
    server_ = std::move(server.value());
  }

  void TearDown() override {
    server_.reset();
    std::string command = "rm -rf '" + dir_ + "'";
    (void)system(command.c_str());
  }

  // Starts migratectl --socket <ours> `args`, stdout and stderr to files.
  pid_t Spawn(const std::vector<std::string>& args, bool with_socket = true) {
    std::vector<std::string> argv = {MIGRATECTL_PATH};
    if (with_socket) argv.insert(argv.end(), {"--socket", socket_});
    argv.insert(argv.end(), args.begin(), args.end());
    std::string out = dir_ + "/out", err = dir_ + "/err";
    pid_t pid = fork();
    if (pid == 0) {
      int out_fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      int err_fd = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(out_fd, STDOUT_FILENO);
      dup2(err_fd, STDERR_FILENO);
      std::vector<char*> raw;
      for (std::string& arg : argv) raw.push_back(arg.data());
      raw.push_back(nullptr);
      execv(raw[0], raw.data());
      _exit(127);
    }
    return pid;
  }

  // Waits for `pid` (killing it after `timeout`) and collects its output.
  Outcome Collect(pid_t pid, std::chrono::seconds timeout = 20s) {
    Outcome outcome;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ADD_FAILURE() << "migratectl did not exit in time";
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    outcome.out = ReadFile(dir_ + "/out");
    outcome.err = ReadFile(dir_ + "/err");
    return outcome;
  }

  Outcome Run(const std::vector<std::string>& args) { return Collect(Spawn(args)); }

  std::string StartOne() {
    Outcome started = Run({"start", "vm1.img", "--target", "10.0.0.2:7000"});
    EXPECT_EQ(started.exit_code, kExitOk) << started.err;
    return started.out.substr(0, started.out.find('\n'));
  }

  std::string dir_;
  std::string socket_;
  FakeMigrationService service_;
  std::unique_ptr<ControlServer> server_;
};

TEST_F(MigratectlTest, StartPrintsTheId) {
  Outcome o = Run({"start", "vm1.img", "vm1-data.img", "--target", "10.0.0.2:7000",
                   "--network-kbps", "20000"});
  EXPECT_EQ(o.exit_code, kExitOk) << o.err;
  EXPECT_EQ(o.out, "m1\n");
  EXPECT_EQ(service_.calls().at(0), "Start vm1.img,vm1-data.img -> 10.0.0.2:7000 net=20000 disk=0");
}

TEST_F(MigratectlTest, MirrorAndMarkingFlagsReachTheService) {
  Outcome o = Run({"start", "vm1.img", "--target", "10.0.0.2:7000", "--mirror", "async", "--backlog-max-mb", "8",
                   "--dscp", "AF41", "--so-priority", "3"});
  EXPECT_EQ(o.exit_code, kExitOk) << o.err;
  Outcome m = Run({"set-mirror-mode", "m1", "--mirror", "sync"});
  EXPECT_EQ(m.exit_code, kExitOk) << m.err;
  EXPECT_EQ(Run({"set-mirror-mode", "m1"}).exit_code, kExitUsage);
  EXPECT_EQ(Run({"start", "vm1.img", "--target", "10.0.0.2:7000", "--mirror", "fast"}).exit_code, kExitUsage);
  EXPECT_EQ(service_.calls(), (std::vector<std::string>{
                                  "Start vm1.img -> 10.0.0.2:7000 net=0 disk=0 mirror=async:8388608 dscp=34 so_priority=3",
                                  "SetMirrorMode m1 sync"}));
}

TEST_F(MigratectlTest, HybridFlagsReachTheService) {
  Outcome o = Run({"start", "vm1.img", "--target", "10.0.0.2:7000", "--mode", "hybrid", "--precopy-pct", "40",
                   "--postcopy-timeout", "120"});
  EXPECT_EQ(o.exit_code, kExitOk) << o.err;
  Outcome d = Run({"start", "vm2.img", "--target", "10.0.0.2:7000", "--mode", "hybrid", "--precopy-pct", "0"});
  EXPECT_EQ(d.exit_code, kExitOk) << d.err;
  Outcome p = Run({"start", "vm3.img", "--target", "10.0.0.2:7000", "--mode", "precopy"});
  EXPECT_EQ(p.exit_code, kExitOk) << p.err;
  EXPECT_EQ(service_.calls(), (std::vector<std::string>{
                                  "Start vm1.img -> 10.0.0.2:7000 net=0 disk=0 hybrid=40%:120s",
                                  "Start vm2.img -> 10.0.0.2:7000 net=0 disk=0 hybrid=0%:600s",
                                  "Start vm3.img -> 10.0.0.2:7000 net=0 disk=0"}));
  Outcome c = Run({"completion", "m1"});
  EXPECT_EQ(c.exit_code, kExitOk) << c.err;
  EXPECT_EQ(c.out, "m1: not completed (hybrid)\n");
  EXPECT_EQ(Run({"completion", "m3"}).out, "m3: not completed\n");
  Outcome progress = Run({"progress", "m1"});
  EXPECT_NE(progress.out.find("hybrid: 40% pre-copy"), std::string::npos) << progress.out;
  EXPECT_NE(Run({"progress", "m3"}).out.find("mode:           precopy\n"), std::string::npos);
}

TEST_F(MigratectlTest, HybridUsageErrorsAreExit2AndSendNothing) {
  const std::vector<std::string> head = {"start", "vm1.img", "--target", "10.0.0.2:7000"};
  for (std::vector<std::string> tail : std::vector<std::vector<std::string>>{
           {"--mode", "hybrid"},  // --precopy-pct is required
           {"--mode", "postcopy", "--precopy-pct", "50"},
           {"--precopy-pct", "50"},
           {"--mode", "precopy", "--precopy-pct", "50"},
           {"--postcopy-timeout", "60"},
           {"--mode", "hybrid", "--precopy-pct", "101"},
           {"--mode", "hybrid", "--precopy-pct", "-1"},
           {"--mode", "hybrid", "--precopy-pct", "half"},
           {"--mode", "hybrid", "--precopy-pct", "50", "--postcopy-timeout", "0"},
           {"--mode", "hybrid", "--precopy-pct", "50", "--postcopy-timeout", "86401"}}) {
    std::vector<std::string> args = head;
    args.insert(args.end(), tail.begin(), tail.end());
    Outcome o = Run(args);
    EXPECT_EQ(o.exit_code, kExitUsage) << tail[0] << " " << tail[1] << ": " << o.err;
    EXPECT_FALSE(o.err.empty());
  }
  EXPECT_NE(Run({"start", "vm1.img", "--target", "h:1", "--mode", "hybrid"}).err.find("--precopy-pct"),
            std::string::npos);
  EXPECT_TRUE(service_.calls().empty());
}

TEST_F(MigratectlTest, IncomingListsTheCopiesBeingReceived) {
  EXPECT_EQ(Run({"incoming"}).out, "no incoming copies\n");
  IncomingInfo copy;
  copy.image = "vm1.img";
  copy.state = "postcopy";
  copy.blocks_total = 2048;
  copy.blocks_remote = 100;
  copy.bytes_pulled = 3000000;
  copy.bytes_fetched_on_demand = 1500000;
  copy.fetches = 3;
  copy.fetch_latency_p50_ms = 1.25;
  copy.fetch_latency_p99_ms = 8.5;
  IncomingInfo failed;
  failed.image = "vm2.img";
  failed.state = "failed";
  failed.reason = "source lost";
  service_.SetIncoming({copy, failed});
  Outcome o = Run({"incoming"});
  EXPECT_EQ(o.exit_code, kExitOk) << o.err;
  EXPECT_NE(o.out.find("IMAGE"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("vm1.img"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("100 of 2048"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("1.50 MB in 3"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("p50/p99 1.2/8.5 ms"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("(source lost)"), std::string::npos) << o.out;
  // --json after the subcommand, as well as before it.
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{{"incoming", "--json"},
                                                                            {"--json", "incoming"}}) {
    Outcome j = Run(args);
    ASSERT_EQ(j.exit_code, kExitOk) << j.err;
    json answer = json::parse(j.out);
    EXPECT_EQ(answer["incoming"].size(), 2u);
    EXPECT_EQ(answer["incoming"][0]["fetch_latency_ms"]["p99"], 8.5);
    EXPECT_EQ(answer["incoming"][1]["reason"], "source lost");
  }
}

TEST_F(MigratectlTest, ProfileShowsTheHottestBlocksAndJsonIsTheProfileFile) {
  policy::ImageProfile im;
  im.image_bytes = 2048ull * 524288;
  im.window_s = 2;
  im.writes = {{3, 20}, {7, 5}, {9, 40}};
  im.data_known = true;
  im.data = {{0, 1500}};
  im.write_bytes = 4100;
  service_.SetProfile("vm1.img", im);
  Outcome o = Run({"profile", "vm1.img", "--seconds", "2"});
  ASSERT_EQ(o.exit_code, kExitOk) << o.err;
  EXPECT_NE(o.out.find("vm1.img: 3 of 2048 blocks written (1500 data blocks of 512 KiB), 32.5 writes/s over 2.0 s, "
                       "4.10 KB per write"),
            std::string::npos)
      << o.out;
  EXPECT_NE(o.out.find("hottest: block 9 (40 writes, 20.0/s), block 3 (20 writes, 10.0/s), block 7"),
            std::string::npos)
      << o.out;
  EXPECT_EQ(service_.calls().back(), "Profile vm1.img 2s");
  Outcome j = Run({"profile", "vm1.img", "--seconds", "2", "--json"});
  ASSERT_EQ(j.exit_code, kExitOk) << j.err;
  json profile = json::parse(j.out)["profile"];
  EXPECT_EQ(profile["images"][0]["writes"][2], json::parse("[9,40.0]"));
  // Usage errors send nothing.
  size_t calls = service_.calls().size();
  EXPECT_EQ(Run({"profile", "vm1.img"}).exit_code, kExitUsage);
  EXPECT_EQ(Run({"profile", "vm1.img", "--seconds", "0"}).exit_code, kExitUsage);
  EXPECT_EQ(Run({"profile", "vm1.img", "--seconds", "3601"}).exit_code, kExitUsage);
  EXPECT_EQ(Run({"profile", "--seconds", "5"}).exit_code, kExitUsage);
  EXPECT_EQ(service_.calls().size(), calls);
}

TEST_F(MigratectlTest, PredictPrintsTheSchedulersTable) {
  Outcome early = Run({"predict", "vm1.img", "--net-kbps", "5000"});
  EXPECT_EQ(early.exit_code, kExitDaemonError);
  EXPECT_NE(early.err.find("wrong_state: no profile of vm1.img: run profile first"), std::string::npos) << early.err;
  ASSERT_EQ(Run({"profile", "vm1.img", "--seconds", "2"}).exit_code, kExitOk);
  Outcome o = Run({"predict", "vm1.img", "--net-kbps", "5000", "--rtt-ms", "2", "--step", "25"});
  ASSERT_EQ(o.exit_code, kExitOk) << o.err << o.out;
  EXPECT_NE(o.out.find("1 image(s)"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("link 5000 KB/s, RTT 2.0 ms, deadline none"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("converges"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("\n75 "), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("\npre-copy "), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("recommended S = "), std::string::npos) << o.out;
  EXPECT_EQ(service_.calls().back(), "Predict vm1.img net=5000 step=25");
  Outcome j = Run({"--json", "predict", "vm1.img", "--net-kbps", "5000", "--deadline-s", "100"});
  ASSERT_EQ(j.exit_code, kExitOk) << j.err;
  json answer = json::parse(j.out);
  EXPECT_EQ(answer["rows"].size(), 21u);
  EXPECT_EQ(answer["deadline_s"], 100.0);
  // A deadline nothing can meet (32 data blocks of 512 KiB at 1 KB/s): exit 5.
  Outcome late = Run({"predict", "vm1.img", "--net-kbps", "1", "--deadline-s", "1"});
  EXPECT_EQ(late.exit_code, kExitBadOutcome) << late.out;
  EXPECT_NE(late.out.find("recommended S"), std::string::npos);
  EXPECT_EQ(Run({"predict", "vm1.img"}).exit_code, kExitUsage);
  EXPECT_EQ(Run({"predict", "vm1.img", "--net-kbps", "0"}).exit_code, kExitUsage);
  EXPECT_EQ(Run({"predict", "vm1.img", "--net-kbps", "10", "--deadline-s", "-1"}).exit_code, kExitUsage);
}

TEST_F(MigratectlTest, EverySubcommandReachesTheService) {
  std::string id = StartOne();
  ASSERT_EQ(id, "m1");
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"set-network-limit", id, "20000"},
           {"set-disk-limit", id, "0"},
           {"progress", id, "--what", "disk"},
           {"completion", id},
           {"verify", id},
           {"finish", id},
           {"release", id},
           {"cancel", id, "--keep-partial"},
           {"list"},
           {"status", id},
           {"status"},
           {"incoming"}}) {
    Outcome o = Run(args);
    EXPECT_EQ(o.exit_code, kExitOk) << args[0] << ": " << o.err;
    EXPECT_FALSE(o.out.empty()) << args[0];
  }
  EXPECT_EQ(service_.calls(),
            (std::vector<std::string>{
                "Start vm1.img -> 10.0.0.2:7000 net=0 disk=0", "SetNetworkLimit m1 20000",
                "SetDiskLimit m1 0", "QueryProgress m1 disk", "QueryCompletion m1",
                "QueryProgress m1 network", "Verify m1", "Finish m1", "Release m1",
                "Cancel m1 keep_partial", "List", "GetStatus m1", "List", "Incoming"}));
}

TEST_F(MigratectlTest, JsonPrintsTheAnswerVerbatim) {
  StartOne();
  Outcome o = Run({"--json", "list"});
  ASSERT_EQ(o.exit_code, kExitOk) << o.err;
  json answer = json::parse(o.out);
  EXPECT_EQ(answer["ok"], true);
  EXPECT_EQ(answer["migrations"][0]["id"], "m1");

  Outcome failed = Run({"--json", "finish", "m9"});
  EXPECT_EQ(failed.exit_code, kExitDaemonError);
  EXPECT_EQ(json::parse(failed.out)["error"]["code"], "unknown_id");
}

TEST_F(MigratectlTest, DaemonErrorIsExit1WithCodeOnStderr) {
  Outcome o = Run({"finish", "m9"});
  EXPECT_EQ(o.exit_code, kExitDaemonError);
  EXPECT_NE(o.err.find("unknown_id"), std::string::npos) << o.err;
  EXPECT_TRUE(o.out.empty());
  Outcome escape = Run({"start", "../etc/shadow", "--target", "h:1"});
  EXPECT_EQ(escape.exit_code, kExitDaemonError);
  EXPECT_NE(escape.err.find("bad_name"), std::string::npos) << escape.err;
}

TEST_F(MigratectlTest, UsageErrorsAreExit2AndSendNothing) {
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {},
           {"frobnicate"},
           {"start", "vm1.img"},
           {"set-network-limit", "m1"},
           {"set-network-limit", "m1", "-5"},
           {"set-disk-limit", "m1", "fast"},
           {"progress", "m1", "--what", "cpu"},
           {"--timeout", "-1", "list"}}) {
    Outcome o = Run(args);
    EXPECT_EQ(o.exit_code, kExitUsage) << (args.empty() ? "(none)" : args[0]) << ": " << o.err;
  }
  EXPECT_TRUE(service_.calls().empty());
  EXPECT_EQ(Run({"--help"}).exit_code, kExitOk);
}

TEST_F(MigratectlTest, NoDaemonIsExit3) {
  Outcome o = Collect(Spawn({"--socket", dir_ + "/nobody.sock", "list"}, false));
  EXPECT_EQ(o.exit_code, kExitCannotConnect);
  EXPECT_NE(o.err.find("nobody.sock"), std::string::npos) << o.err;
}

TEST_F(MigratectlTest, NoAnswerInTimeIsExit4) {
  std::string id = StartOne();
  service_.BlockSlowCalls();
  Outcome o = Run({"--timeout", "0.3", "finish", id});
  service_.Unblock();
  EXPECT_EQ(o.exit_code, kExitNoAnswer) << o.err;
}

TEST_F(MigratectlTest, VerifyDifferencesAreExit5) {
  std::string id = StartOne();
  service_.SetVerifyReport({false, 16, {{"vm1.img", 1048576, 524288}}});
  Outcome o = Run({"verify", id});
  EXPECT_EQ(o.exit_code, kExitBadOutcome);
  EXPECT_NE(o.out.find("offset 1048576"), std::string::npos) << o.out;
}

Progress Step(const char* phase, uint64_t left) {
  Progress p;
  p.phase = phase;
  p.bytes_total = 1000000;
  p.bytes_left = left;
  p.network_kbps = 12345;
  p.eta_s = 80;
  return p;
}

TEST_F(MigratectlTest, WatchPrintsPlainLinesWhenNotATerminal) {
  std::string id = StartOne();
  service_.ScriptProgress(id, {Step("bulk", 600000), Step("mirror", 0), Step("finished", 0)});
  Outcome o = Run({"watch"});
  EXPECT_EQ(o.exit_code, kExitOk) << o.err;
  EXPECT_EQ(o.out.find('\x1b'), std::string::npos) << "ANSI codes in non-TTY output";
  std::vector<std::string> lines;
  std::stringstream stream(o.out);
  for (std::string line; std::getline(stream, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 3u) << o.out;
  EXPECT_NE(lines[0].find("bulk"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("40.0%"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("12.3 MB/s"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("1m20s"), std::string::npos) << lines[0];
  EXPECT_NE(lines[2].find("finished"), std::string::npos) << lines[2];
}

TEST_F(MigratectlTest, ListAndStatusShowTheHybridCounters) {
  ASSERT_EQ(Run({"start", "vm1.img", "--target", "h:1", "--mode", "hybrid", "--precopy-pct", "40"}).exit_code, kExitOk);
  Progress p = Step("postcopy", 0);
  p.mode = "hybrid";
  p.precopy_pct = 40;
  p.data_blocks = 1000;
  p.blocks_remote = 250;
  p.bytes_fetched_on_demand = 2000000;
  p.fetch_latency_p50_ms = 1.5;
  p.fetch_latency_p99_ms = 9;
  service_.ScriptProgress("m1", {p});
  const std::string detail =
      "hybrid: 40% pre-copy, 250 blocks remote, 2.00 MB fetched on demand (p50/p99 1.5/9.0 ms), 0 B pulled";
  Outcome list = Run({"list"});
  EXPECT_NE(list.out.find(" 75.0%"), std::string::npos) << list.out;  // blocks, not bytes
  EXPECT_NE(list.out.find("\n      " + detail + "\n"), std::string::npos) << list.out;
  Outcome status = Run({"status", "m1"});
  EXPECT_NE(status.out.find("mode:           " + detail + "\n"), std::string::npos) << status.out;
  json answer = json::parse(Run({"--json", "status", "m1"}).out);
  EXPECT_EQ(answer["progress"]["mode"], "hybrid");
  EXPECT_EQ(answer["progress"]["blocks_remote"], 250);
  EXPECT_EQ(answer["progress"]["fetch_latency_ms"]["p50"], 1.5);
  // Finish handed the VM over: cancel is refused, exit 1.
  Outcome cancel = Run({"cancel", "m1"});
  EXPECT_EQ(cancel.exit_code, kExitDaemonError);
  EXPECT_NE(cancel.err.find("wrong_state"), std::string::npos) << cancel.err;
}

TEST_F(MigratectlTest, WatchOfAFailedMigrationIsExit5) {
  std::string id = StartOne();
  service_.ScriptProgress(id, {Step("failed", 1000)});
  EXPECT_EQ(Run({"watch", id}).exit_code, kExitBadOutcome);
  EXPECT_EQ(Run({"watch", "m42"}).exit_code, kExitDaemonError);
}

TEST_F(MigratectlTest, EventsStreamUntilTheDaemonGoesAway) {
  pid_t pid = Spawn({"--json", "events"});
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (service_.subscriber_count() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(service_.subscriber_count(), 1u);
  service_.Emit(Event{"m1", "phase", "dirty", "bulk done", 1e9});
  service_.Emit(Event{"m1", "completed", "mirror", "", 1e9 + 1});
  std::this_thread::sleep_for(200ms);
  server_->Stop();
  Outcome o = Collect(pid);
  EXPECT_EQ(o.exit_code, kExitNoAnswer);
  std::stringstream stream(o.out);
  std::string first, second;
  std::getline(stream, first);
  std::getline(stream, second);
  EXPECT_EQ(json::parse(first)["event"], "phase");
  EXPECT_EQ(json::parse(second)["event"], "completed");
}

}  // namespace
}  // namespace migratefs::ctl
