#include "broker/ctl/runner.h"

#include <iostream>

#include "broker/ctl/exit_codes.h"
#include "broker/ctl/format.h"

namespace migratefs::ctl {

using control::ControlClient;
using nlohmann::json;

ControlClient::Timeout RequestTimeout(const GlobalOptions& options, bool slow_op) {
  if (options.timeout_s) {
    if (*options.timeout_s <= 0) return ControlClient::kForever;
    return ControlClient::Timeout(static_cast<int64_t>(*options.timeout_s * 1000));
  }
  return slow_op ? ControlClient::kForever : std::chrono::seconds(10);
}

Connection ConnectOrReport(const GlobalOptions& options) {
  auto client = ControlClient::Connect(options.socket);
  if (!client) return {nullptr, ReportTransportError(client.error())};
  return {std::move(client.value()), kExitOk};
}

int ReportTransportError(const Error& error) {
  std::cerr << "migratectl: " << error.message << "\n";
  return error.code == ControlClient::kConnectFailed ? kExitCannotConnect : kExitNoAnswer;
}

int ReportDaemonError(const json& answer) {
  const json& error = answer.contains("error") ? answer["error"] : json::object();
  std::cerr << "migratectl: " << error.value("code", "error") << ": "
            << error.value("message", answer.dump()) << "\n";
  return kExitDaemonError;
}

int RunRequest(const GlobalOptions& options, const json& request, bool slow_op,
               const HumanPrinter& print) {
  Connection connection = ConnectOrReport(options);
  if (!connection.client) return connection.exit_code;
  ControlClient& client = *connection.client;

  std::string line;
  try {
    line = request.dump() + "\n";
  } catch (const json::exception& e) {  // an argument that is not valid UTF-8
    std::cerr << "migratectl: arguments must be UTF-8 text\n";
    return kExitUsage;
  }
  if (Status sent = client.Send(line); !sent) return ReportTransportError(sent.error());
  Result<std::string> raw = client.ReadLine(RequestTimeout(options, slow_op));
  if (!raw) return ReportTransportError(raw.error());

  json answer = json::parse(raw.value(), nullptr, /*allow_exceptions=*/false);
  if (!answer.is_object()) {
    std::cerr << "migratectl: the daemon's answer is not a JSON object: " << raw.value() << "\n";
    return kExitNoAnswer;
  }
  if (options.json) std::cout << raw.value() << "\n";
  if (answer.value("ok", false) != true) return ReportDaemonError(answer);
  if (options.json) return kExitOk;
  try {
    return print(answer);
  } catch (const json::exception&) {  // a daemon of another version; show what it said
    std::cout << raw.value() << "\n";
    return kExitOk;
  }
}

int RunEvents(const GlobalOptions& options) {
  Connection connection = ConnectOrReport(options);
  if (!connection.client) return connection.exit_code;
  ControlClient& client = *connection.client;

  if (Status sent = client.Send("{\"op\":\"events\"}\n"); !sent) {
    return ReportTransportError(sent.error());
  }
  Result<std::string> ack = client.ReadLine(RequestTimeout(options, false));
  if (!ack) return ReportTransportError(ack.error());
  json ack_json = json::parse(ack.value(), nullptr, false);
  if (!ack_json.is_object() || ack_json.value("ok", false) != true) {
    return ack_json.is_object() ? ReportDaemonError(ack_json) : kExitNoAnswer;
  }
  for (;;) {
    Result<std::string> line = client.ReadLine(ControlClient::kForever);
    if (!line) {
      std::cerr << "migratectl: event stream ended: " << line.error().message << "\n";
      return kExitNoAnswer;
    }
    json event = json::parse(line.value(), nullptr, false);
    if (event.is_object() && event.value("ok", true) == false) {  // the server gave up on us
      if (options.json) std::cout << line.value() << std::endl;
      return ReportDaemonError(event);
    }
    if (options.json) {
      std::cout << line.value() << std::endl;
    } else {
      std::cout << EventText(event) << std::endl;
    }
  }
}

}  // namespace migratefs::ctl
