// The broker and scheduler binaries refuse malformed input files with exit status 2
// and a message that names the file and the offending field (no root needed).
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace {

namespace fs = std::filesystem;

struct Outcome {
  int exit_code = -1;
  std::string output;
};

Outcome RunCommand(const std::string& command) {
  Outcome out;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), p)) out.output.append(buf, n);
  int status = ::pclose(p);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

class BrokerCli : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/broker-cli-XXXXXX";
    dir_ = ::mkdtemp(templ);
    key_ = Write("key", "0123456789abcdef0123456789\n");
    topology_ = Write("topology.toml",
                      "[[switch]]\nname = \"sw\"\n"
                      "[[host]]\nname = \"a\"\nswitch = \"sw\"\nbroker = \"127.0.0.1:1\"\nmigratefs = \"127.0.0.1:2\"\n"
                      "[[host]]\nname = \"b\"\nswitch = \"sw\"\nbroker = \"127.0.0.1:3\"\nmigratefs = \"127.0.0.1:4\"\n");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
    return dir_ + "/" + name;
  }
  Outcome Broker(const std::string& config_text) {
    return RunCommand(std::string(MIGRATEFS_BROKER_BINARY) + " --config " + Write("broker.toml", config_text));
  }
  Outcome Scheduler(const std::string& tasks_text, const std::string& topology = "") {
    return RunCommand(std::string(MIGRATEFS_SCHEDULER_BINARY) + " submit --keyfile " + key_ + " --tasks " +
               Write("tasks.toml", tasks_text) + " --topology " + (topology.empty() ? topology_ : topology));
  }
  std::string dir_, key_, topology_;
};

const char* kTask = "[[task]]\nvm = \"vm1\"\ndisks = [\"vm1.img\"]\nsource = \"a\"\ntarget = \"b\"\ndeadline = 60\n";

TEST_F(BrokerCli, BrokerNamesTheBadField) {
  std::string base = "host = \"a\"\ncontrol_socket = \"/nonexistent/c.sock\"\nsocket = \"" + dir_ + "/b.sock\"\n";
  struct Case {
    std::string text, names;
  };
  for (const Case& c : {Case{base, "\"period\" is missing"},
                        Case{base + "period = \"1s\"\n", "\"period\" must be a number"},
                        Case{base + "period = 1\ndanger = 500\nwarning = 400\n", "\"warning\""},
                        Case{base + "period = 1\n[[link]]\niface = \"eth0\"\ncapacity_kbps = -5\n",
                             "\"link[0].capacity_kbps\""},
                        Case{base + "period = 1\nhypervisor_command = \"virsh {domain}\"\n", "{domain}"},
                        Case{base + "period = 1\nlisten = \"10.0.0.1:7100\"\n", "\"keyfile\""},
                        Case{base + "period = 1\nkeyfile = \"/nonexistent/key\"\n", "\"keyfile\""},
                        Case{base + "period = 1\nperod = 2\n", "\"perod\""},
                        Case{"host = [\n", "broker.toml:"}}) {
    Outcome out = Broker(c.text);
    EXPECT_EQ(out.exit_code, 2) << c.text << "\n" << out.output;
    EXPECT_NE(out.output.find(c.names), std::string::npos) << out.output;
    EXPECT_NE(out.output.find("broker.toml"), std::string::npos) << out.output;
  }
  Outcome missing = RunCommand(std::string(MIGRATEFS_BROKER_BINARY) + " --config " + dir_ + "/none.toml");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("none.toml"), std::string::npos) << missing.output;
}

TEST_F(BrokerCli, SchedulerNamesTheBadField) {
  struct Case {
    std::string text, names;
  };
  for (const Case& c : {Case{"", "\"task\" is missing"},
                        Case{std::string(kTask) + "colour = \"red\"\n", "task[0]: field \"colour\""},
                        Case{"[[task]]\nvm = \"vm1\"\nsource = \"a\"\ntarget = \"b\"\ndeadline = 60\n",
                             "task[0]: field \"disks\""},
                        Case{std::string(kTask) + kTask, "task[1]: field \"vm\""},
                        Case{"[[task]]\nvm = \"x\"\ndisks = [\"x\"]\nsource = \"a\"\ntarget = \"z\"\ndeadline = 1\n",
                             "task[0]: field \"target\" names \"z\""},
                        Case{"[[task]]\nvm = \"x\"\ndisks = [\"x\"]\nsource = \"a\"\ntarget = \"b\"\ndeadline = -1\n",
                             "task[0]: field \"deadline\""},
                        Case{"[[task]\n", "tasks.toml:1"}}) {
    Outcome out = Scheduler(c.text);
    EXPECT_EQ(out.exit_code, 2) << c.text << "\n" << out.output;
    EXPECT_NE(out.output.find(c.names), std::string::npos) << out.output;
    EXPECT_NE(out.output.find("tasks.toml"), std::string::npos) << out.output;
  }
  std::string bad_topology = Write("bad-topology.toml", "[[switch]]\nname = \"sw\"\n[[host]]\nname = \"a\"\nswitch = \"sw2\"\n"
                                                        "broker = \"h:1\"\nmigratefs = \"h:2\"\n");
  Outcome out = Scheduler(kTask, bad_topology);
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_NE(out.output.find("host[0]: field \"switch\""), std::string::npos) << out.output;
  EXPECT_NE(out.output.find("bad-topology.toml"), std::string::npos) << out.output;
}

TEST_F(BrokerCli, SchedulerPlanPrintsPathsAndSharedSections) {
  Outcome out = RunCommand(std::string(MIGRATEFS_SCHEDULER_BINARY) + " plan --tasks " +
                    Write("tasks.toml", std::string(kTask) +
                                            "[[task]]\nvm = \"vm2\"\ndisks = [\"vm2.img\"]\nsource = \"a\"\n"
                                            "target = \"b\"\ndeadline = 60\n") +
                    " --topology " + topology_);
  EXPECT_EQ(out.exit_code, 0) << out.output;
  EXPECT_NE(out.output.find("\"a-sw\""), std::string::npos) << out.output;
  EXPECT_NE(out.output.find("\"shared_sections\""), std::string::npos) << out.output;
}

TEST_F(BrokerCli, SchedulerWithUnreachableBrokersReportsAndExits1) {
  Outcome out = RunCommand(std::string(MIGRATEFS_SCHEDULER_BINARY) + " submit --keyfile " + key_ + " --tasks " +
                    Write("tasks.toml", kTask) + " --topology " + topology_ + " --rpc-timeout 0.5 --timeout 2");
  EXPECT_EQ(out.exit_code, 1) << out.output;
  EXPECT_NE(out.output.find("\"not_submitted\""), std::string::npos) << out.output;
}

}  // namespace
