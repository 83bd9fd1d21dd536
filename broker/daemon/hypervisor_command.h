// The hypervisor hook: the operator's command template (e.g.
// "virsh migrate --live {vm} qemu+ssh://{target}/system") expanded for one VM and run
// through /bin/sh once the VM's disks are all in phase 3.
#pragma once

#include <map>
#include <string>

#include "migratefs/status.h"

namespace migratefs::broker {

// The placeholders a template may use.
inline constexpr const char* kCommandPlaceholders[] = {"vm", "source", "target"};

// `text` as one single-quoted shell word: 'it'\''s' for it's. Always quoted, so any
// value (spaces, $, ;, backticks, newlines) reaches the command as one literal word.
std::string ShellQuote(const std::string& text);

// Replaces each {name} by ShellQuote(values[name]); "{{" and "}}" are literal braces.
// invalid_argument naming the placeholder when it is unknown or a brace is unmatched.
Result<std::string> ExpandCommand(const std::string& templ,
                                  const std::map<std::string, std::string>& values);
// Checks a template with dummy values (for config validation).
Status CheckCommandTemplate(const std::string& templ);

struct CommandOutcome {
  int exit_code = -1;     // -1 if killed by a signal or not run
  bool timed_out = false;
  std::string output;     // stdout+stderr, at most 64 KiB kept
};

// Runs `/bin/sh -c command` in its own process group; after `timeout_s` the group gets
// SIGKILL. Blocks until the shell is reaped.
CommandOutcome RunShellCommand(const std::string& command, double timeout_s);

}  // namespace migratefs::broker
