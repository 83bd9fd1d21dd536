#include "broker/daemon/hypervisor_command.h"

#include <gtest/gtest.h>

#include <chrono>

namespace migratefs::broker {
namespace {

TEST(ShellQuote, QuotesEverything) {
  EXPECT_EQ(ShellQuote("vm1"), "'vm1'");
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
  EXPECT_EQ(ShellQuote("a b;$(rm -rf /)`x`"), "'a b;$(rm -rf /)`x`'");
}

TEST(ExpandCommand, ReplacesPlaceholdersWithQuotedWords) {
  auto c = ExpandCommand("virsh migrate --live {vm} qemu+ssh://{target}/system # {source}",
                         {{"vm", "web 1"}, {"target", "b"}, {"source", "a"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c.value(), "virsh migrate --live 'web 1' qemu+ssh://'b'/system # 'a'");
  auto braces = ExpandCommand("echo {{json}} {vm}", {{"vm", "x"}});
  ASSERT_TRUE(braces);
  EXPECT_EQ(braces.value(), "echo {json} 'x'");
}

TEST(ExpandCommand, UnknownOrUnmatchedPlaceholdersAreErrors) {
  auto unknown = ExpandCommand("run {host}", {{"vm", "x"}});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("{host}"), std::string::npos);
  EXPECT_FALSE(ExpandCommand("run {vm", {{"vm", "x"}}));
  EXPECT_FALSE(ExpandCommand("run vm}", {{"vm", "x"}}));
  EXPECT_TRUE(CheckCommandTemplate("x {vm} {source} {target}"));
  EXPECT_FALSE(CheckCommandTemplate("x {id}"));
}

TEST(RunShellCommand, HostileValuesArriveAsOneLiteralArgument) {
  std::string hostile = "a'b \"c\" $(echo pwned); `id` \\ \n end";
  auto c = ExpandCommand("printf '%s|' {vm} {target}", {{"vm", hostile}, {"target", "t"}});
  ASSERT_TRUE(c);
  CommandOutcome out = RunShellCommand(c.value(), 10);
  EXPECT_EQ(out.exit_code, 0);
  EXPECT_EQ(out.output, hostile + "|t|");
}

TEST(RunShellCommand, ExitCodeAndTimeout) {
  EXPECT_EQ(RunShellCommand("exit 3", 10).exit_code, 3);
  auto start = std::chrono::steady_clock::now();
  CommandOutcome slow = RunShellCommand("sleep 30", 0.3);
  EXPECT_TRUE(slow.timed_out);
  EXPECT_NE(slow.exit_code, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

}  // namespace
}  // namespace migratefs::broker
