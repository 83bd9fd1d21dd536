#include "broker/daemon/hypervisor_command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

namespace migratefs::broker {

std::string ShellQuote(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  out.push_back('\'');
  return out;
}

Result<std::string> ExpandCommand(const std::string& templ,
                                  const std::map<std::string, std::string>& values) {
  std::string out;
  for (size_t i = 0; i < templ.size(); ++i) {
    char c = templ[i];
    if ((c == '{' || c == '}') && i + 1 < templ.size() && templ[i + 1] == c) {
      out.push_back(c);
      ++i;
      continue;
    }
    if (c == '}') {
      return MakeError(errc::kInvalidArgument,
                       "hypervisor_command: unmatched '}' at offset " + std::to_string(i));
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    size_t close = templ.find('}', i);
    if (close == std::string::npos) {
      return MakeError(errc::kInvalidArgument,
                       "hypervisor_command: unmatched '{' at offset " + std::to_string(i));
    }
    std::string name = templ.substr(i + 1, close - i - 1);
    auto value = values.find(name);
    if (value == values.end()) {
      return MakeError(errc::kInvalidArgument, "hypervisor_command: unknown placeholder {" +
                                                   name + "} (known: {vm} {source} {target})");
    }
    out += ShellQuote(value->second);
    i = close;
  }
  return out;
}

Status CheckCommandTemplate(const std::string& templ) {
  std::map<std::string, std::string> dummy;
  for (const char* name : kCommandPlaceholders) dummy[name] = "x";
  auto expanded = ExpandCommand(templ, dummy);
  if (!expanded) return expanded.error();
  return OkStatus();
}

CommandOutcome RunShellCommand(const std::string& command, double timeout_s) {
  CommandOutcome outcome;
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    outcome.output = std::string("pipe: ") + std::strerror(errno);
    return outcome;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    outcome.output = std::string("fork: ") + std::strerror(errno);
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    return outcome;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    sigset_t none;  // the broker blocks SIGTERM/SIGINT in its threads; the hook must not
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(pipe_fds[1], 1);
    ::dup2(pipe_fds[1], 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  ::close(pipe_fds[1]);
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) {
      outcome.timed_out = true;
      ::kill(-pid, SIGKILL);
      break;
    }
    pollfd p{pipe_fds[0], POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(left));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) continue;
    char chunk[4096];
    ssize_t n = ::read(pipe_fds[0], chunk, sizeof(chunk));
    if (n <= 0) break;  // EOF: every writer (the shell and its children) is gone
    if (outcome.output.size() < 65536) outcome.output.append(chunk, static_cast<size_t>(n));
  }
  ::close(pipe_fds[0]);
  int status = 0;
  // The pipe closed or we gave up: reap the shell (bounded: kill the group if it lingers).
  for (int i = 0; ::waitpid(pid, &status, WNOHANG) == 0; ++i) {
    if (i == 50 || outcome.timed_out) ::kill(-pid, SIGKILL);
    ::usleep(20000);
  }
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return outcome;
}

}  // namespace migratefs::broker
