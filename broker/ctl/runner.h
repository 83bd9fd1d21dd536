// The request/answer plumbing of migratectl: connect, send, wait, print, map to an exit
// code (exit_codes.h). Output goes to stdout, diagnostics to stderr.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "net/control/control_client.h"

namespace migratefs::ctl {

struct GlobalOptions {
  std::string socket;
  bool json = false;                // print the daemon's answer lines verbatim
  std::optional<double> timeout_s;  // --timeout; unset = the subcommand's default
};

// The per-request wait when --timeout is not given: 10 s; finish and verify may wait for
// the peer or read whole images, so they wait as long as it takes.
control::ControlClient::Timeout RequestTimeout(const GlobalOptions& options, bool slow_op);

// Shows a successful answer to a human; returns the exit code.
using HumanPrinter = std::function<int(const nlohmann::json& answer)>;

// One request, one answer. With --json the answer line is printed as received.
int RunRequest(const GlobalOptions& options, const nlohmann::json& request, bool slow_op,
               const HumanPrinter& print);

// `events`: prints event lines until the daemon closes the stream.
int RunEvents(const GlobalOptions& options);

// Shared by the runners: a connection, or the exit code after reporting why not.
struct Connection {
  std::unique_ptr<control::ControlClient> client;
  int exit_code = 0;  // meaningful when client is null
};
Connection ConnectOrReport(const GlobalOptions& options);

// Prints a transport error to stderr and returns kExitCannotConnect / kExitNoAnswer.
int ReportTransportError(const Error& error);
// Prints {"ok":false} answer's code and message to stderr; returns kExitDaemonError.
int ReportDaemonError(const nlohmann::json& answer);

}  // namespace migratefs::ctl
