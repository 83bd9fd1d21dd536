// migratectl: the operator's command line for a migratefs daemon's control socket.
// Usage and exit codes: net/control/README.md ("migratectl") and exit_codes.h.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "broker/ctl/exit_codes.h"
#include "broker/ctl/format.h"
#include "broker/ctl/runner.h"
#include "broker/ctl/submit_request.h"
#include "broker/ctl/watch.h"
#include "migratefs/control_protocol.h"
#include "migratefs/migration_service.h"
#include "migratefs/defaults.h"

namespace migratefs::ctl {
namespace {

using nlohmann::json;

// Human printers: what a successful answer looks like on a terminal.

HumanPrinter PrintLine(std::string text) {
  return [text = std::move(text)](const json&) {
    std::cout << text << "\n";
    return kExitOk;
  };
}

int PrintVerify(const std::string& id, const json& answer) {
  uint64_t blocks = answer.value("blocks_compared", uint64_t{0});
  if (answer.value("identical", false)) {
    std::cout << id << ": identical (" << blocks << " blocks compared)\n";
    return kExitOk;
  }
  const json& ranges = answer.contains("mismatches") ? answer["mismatches"] : json::array();
  std::cout << id << ": DIFFERENT: " << ranges.size() << " mismatching ranges in " << blocks
            << " blocks compared\n";
  for (const json& r : ranges) {
    if (!r.is_object()) continue;
    std::cout << "  " << r.value("image", "?") << "  offset " << r.value("offset", uint64_t{0})
              << "  length " << r.value("length", uint64_t{0}) << "\n";
  }
  return kExitBadOutcome;
}

int PrintStatus(const json& answer) {
  if (answer.contains("id")) {  // one migration
    std::cout << "id:             " << IdOf(answer) << "\n";
    std::cout << "target:         " << answer.value("target", "") << "\n";
    std::string images;
    for (const json& image : answer.value("images", json::array())) {
      if (image.is_string()) images += (images.empty() ? "" : " ") + image.get<std::string>();
    }
    std::cout << "images:         " << images << "\n";
    std::cout << "completed:      " << (answer.value("completed", false) ? "yes" : "no") << "\n";
    std::cout << ProgressBlock(answer.value("progress", json::object()));
    return kExitOk;
  }
  std::cout << "migratefs " << answer.value("version", "?") << "\n"
            << MigrationTable(answer.value("migrations", json::array()));
  return kExitOk;
}

// Rates on the command line: digits only. CLI11 alone would wrap "-5" around into a huge
// uint64_t; the daemon still judges the range.
CLI::Validator WholeKbps() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        bool digits = !text.empty() && text.size() <= 19 &&
                      text.find_first_not_of("0123456789") == std::string::npos;
        return digits ? "" : "must be a whole number of KB/s (0 = no limit), got " + text;
      },
      "KB/s");
}

CLI::Validator Seconds() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        char* end = nullptr;
        double value = std::strtod(text.c_str(), &end);
        bool good = !text.empty() && *end == '\0' && value >= 0 && value < 1e9;
        return good ? "" : "must be a number of seconds >= 0, got " + text;
      },
      "");
}

// The subcommands and what they collect.
struct Arguments {
  std::vector<std::string> images;
  std::string target;
  uint64_t network_kbps = 0;
  bool overwrite = false;
  bool force = false;
  uint64_t disk_kbps = 0;
  std::string mirror;            // "" = the daemon's default (sync)
  uint64_t backlog_max_mb = 0;   // 0 = the daemon's default
  std::string dscp;              // "" = the daemon's -o dscp=
  int64_t so_priority = -1;      // -1 = the daemon's -o so_priority=
  std::string mode;              // "" = the daemon's default (precopy)
  int64_t precopy_pct = -1;      // -1 = not given (required with --mode hybrid)
  int64_t postcopy_timeout_s = -1;  // -1 = the daemon's default (600)
  std::string id;
  uint64_t kbps = 0;
  std::string what = "network";
  bool keep_partial = false;
  std::vector<std::string> ids;
  SubmitArgs submit;
  uint64_t seconds = 0;           // profile
  uint64_t net_kbps = 0;          // predict
  std::string deadline_s, rtt_ms, step;  // predict; "" = the daemon's default
};

// A number >= 0 (predict's --deadline-s, --rtt-ms, --step); the daemon judges the range.
CLI::Validator NonNegative() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        char* end = nullptr;
        double value = std::strtod(text.c_str(), &end);
        bool good = !text.empty() && *end == '\0' && value >= 0 && value < 1e12;
        return good ? "" : "must be a number >= 0, got " + text;
      },
      "");
}

void AddMirrorFields(const Arguments& args, json* r) {
  if (!args.mirror.empty()) (*r)["mirror"] = args.mirror;
  if (args.backlog_max_mb) (*r)["backlog_max_bytes"] = args.backlog_max_mb << 20;
}

// --mode and its hybrid options, checked as the daemon does (net/control/request.h):
// --precopy-pct is required with hybrid, and both hybrid options need it. Returns the
// usage error, or "" after adding the fields to `r`.
std::string AddCopyFields(const Arguments& args, json* r) {
  bool hybrid = args.mode == "hybrid";
  if (!hybrid) {
    if (args.precopy_pct >= 0) return "--precopy-pct needs --mode hybrid";
    if (args.postcopy_timeout_s >= 0) return "--postcopy-timeout needs --mode hybrid";
  } else if (args.precopy_pct < 0) {
    return "--mode hybrid needs --precopy-pct (0..100: the share of data blocks on the target before completion)";
  }
  if (!args.mode.empty()) (*r)["mode"] = args.mode;
  if (args.precopy_pct >= 0) (*r)["precopy_pct"] = args.precopy_pct;
  if (args.postcopy_timeout_s >= 0) (*r)["postcopy_timeout_s"] = args.postcopy_timeout_s;
  return "";
}

int Main(int argc, char** argv) {
  CLI::App app{"migratectl: control a migratefs daemon (live migration of VM disk images)"};
  app.require_subcommand(1);
  // The global options may follow the subcommand too (`migratectl incoming --json`);
  // subcommands inherit this setting when they are added below.
  app.fallthrough();
  app.footer(
      "Exit codes: 0 ok; 1 the daemon answered an error (code and message on stderr);\n"
      "2 usage error; 3 cannot connect to the socket; 4 connection lost or no answer in\n"
      "time (the request may have been carried out); 5 verify found differences, or a\n"
      "watched migration failed or was cancelled.");

  GlobalOptions global;
  global.socket = kDefaultControlSocket;
  double timeout_s = 0;
  app.add_option("--socket", global.socket, "the daemon's control socket")
      ->envname("MIGRATECTL_SOCKET")
      ->capture_default_str();
  app.add_flag("--json", global.json, "print the daemon's JSON answers verbatim");
  CLI::Option* timeout_option =
      app.add_option("--timeout", timeout_s,
                     "seconds to wait for an answer; 0 = forever (default: 10, and forever "
                     "for finish and verify)")
          ->check(Seconds());

  Arguments args;
  auto id_arg = [&args](CLI::App* sub) {
    sub->add_option("ID", args.id, "migration id, as start printed it")->required();
  };

  CLI::App* start = app.add_subcommand("start", "start migrating one VM's images; prints the id");
  start->add_option("IMAGE", args.images, "image names relative to the served directory")
      ->required();
  start->add_option("--target", args.target, "the peer daemon's HOST:PORT")->required();
  start->add_option("--network-kbps", args.network_kbps, "initial network limit, KB/s (0 = none)")
      ->check(WholeKbps());
  start->add_option("--disk-kbps", args.disk_kbps, "initial disk-write limit, KB/s (0 = none)")
      ->check(WholeKbps());
  start->add_flag("--overwrite", args.overwrite,
                  "replace a file of that name on the target that is not a copy of this image "
                  "(never one open for writing there)");
  start->add_flag("--force", args.force, "do not check that the target has room for the image");
  auto mirror_options = [&args](CLI::App* sub) {
    sub->add_option("--mirror", args.mirror, "phase 3: sync (the VM waits for the target) or async (bounded backlog)")
        ->check(CLI::IsMember({"sync", "async"}));
    sub->add_option("--backlog-max-mb", args.backlog_max_mb, "async mirror: backlog size in MiB (default 64)")
        ->check(CLI::Range(uint64_t(1), uint64_t(1) << 20));
  };
  mirror_options(start);
  start->add_option("--dscp", args.dscp, "DSCP of the peer connection: a name (AF41, EF, CS6) or 0..63");
  start->add_option("--so-priority", args.so_priority, "socket priority of the peer connection")
      ->check(CLI::Range(int64_t(0), int64_t(UINT32_MAX)));
  start->add_option("--mode", args.mode,
                    "precopy (default: switch over once every block is on the target) or hybrid "
                    "(switch over at --precopy-pct, the target fetches the rest)")
      ->check(CLI::IsMember({"precopy", "hybrid"}));
  start->add_option("--precopy-pct", args.precopy_pct,
                    "hybrid: share of the data blocks on the target before completion, 0..100 (required)")
      ->check(CLI::Range(int64_t(0), int64_t(100)));
  start->add_option("--postcopy-timeout", args.postcopy_timeout_s,
                    "hybrid: seconds the target's reads wait for a lost source before they fail (default 600)")
      ->check(CLI::Range(int64_t(1), int64_t(86400)));

  CLI::App* set_mirror = app.add_subcommand("set-mirror-mode", "switch phase 3 between sync and async mirroring");
  id_arg(set_mirror);
  mirror_options(set_mirror);
  set_mirror->get_option("--mirror")->required();

  CLI::App* set_net = app.add_subcommand("set-network-limit", "limit the migration's sending rate");
  CLI::App* set_disk = app.add_subcommand("set-disk-limit", "limit the VM's write rate");
  for (CLI::App* sub : {set_net, set_disk}) {
    id_arg(sub);
    sub->add_option("KBPS", args.kbps, "KB/s (1 KB = 1000 bytes); 0 removes the limit")
        ->required()
        ->check(WholeKbps());
  }

  CLI::App* progress = app.add_subcommand("progress", "rates, phase, data left, ETA");
  id_arg(progress);
  progress->add_option("--what", args.what, "which rate \"rate\" reports")
      ->check(CLI::IsMember({"network", "disk"}))
      ->capture_default_str();

  CLI::App* completion =
      app.add_subcommand("completion", "whether every block is on the target (phase 3)");
  id_arg(completion);
  CLI::App* finish = app.add_subcommand(
      "finish", "after the hypervisor's last sync: flush, stop mirroring, fence the source");
  id_arg(finish);
  CLI::App* cancel = app.add_subcommand("cancel", "stop; the source stays untouched");
  id_arg(cancel);
  cancel->add_flag("--keep-partial", args.keep_partial,
                   "keep the target's partial copy (marked incomplete) instead of removing it");
  CLI::App* verify = app.add_subcommand("verify", "compare block hashes of both copies");
  id_arg(verify);
  CLI::App* release =
      app.add_subcommand("release", "lift the fence of a finished migration's source copy");
  id_arg(release);
  CLI::App* list = app.add_subcommand("list", "every migration of this daemon");
  CLI::App* status = app.add_subcommand("status", "the daemon, or one migration in detail");
  status->add_option("ID", args.id, "migration id");
  CLI::App* events = app.add_subcommand("events", "stream phase changes, pauses, failures");
  CLI::App* submit = app.add_subcommand(
      "submit", "hand a migration task to a broker (--socket = the broker's local socket)");
  submit->add_option("VM", args.submit.vm, "the VM's name")->required();
  submit->add_option("--image", args.submit.images, "its disk images (repeat)")->required();
  submit->add_option("--source", args.submit.source, "this broker's host name")->required();
  submit->add_option("--target-host", args.submit.target, "the target's host name")->required();
  submit->add_option("--target", args.submit.target_address, "the target migratefs HOST:PORT")->required();
  submit->add_option("--deadline", args.submit.deadline_in_s, "seconds from now")->required();
  submit->add_option("--priority", args.submit.priority, "high, medium or low (default medium)")
      ->check(CLI::IsMember({"high", "medium", "low"}));
  submit->add_flag("--important", args.submit.important, "the old flag: same as --priority high");
  submit->add_option("--path", args.submit.path, "the path's sections, source to target (repeat)");
  CLI::App* watch = app.add_subcommand("watch", "progress bars until the migrations end");
  watch->add_option("ID", args.ids, "migration ids (default: all)");
  CLI::App* incoming = app.add_subcommand("incoming", "the copies this daemon receives (target side, postcopy)");
  CLI::App* profile = app.add_subcommand(
      "profile", "count the VM's writes per block of its images for a while (source, before start; --json: the profile file of migratefs-scheduler predict)");
  profile->add_option("IMAGE", args.images, "image names relative to the served directory")->required();
  profile->add_option("--seconds", args.seconds, "how long to count, 1..3600")
      ->required()
      ->check(CLI::Range(uint64_t(1), uint64_t(kMaxProfileSeconds)));
  CLI::App* predict = app.add_subcommand(
      "predict", "seed 002: predicted T, U, fetches and stall per hybrid S, from the images' last profile");
  predict->add_option("IMAGE", args.images, "image names, in start order")->required();
  predict->add_option("--net-kbps", args.net_kbps, "link rate for the migration, KB/s (1 KB = 1000 bytes)")
      ->required()
      ->check(CLI::Range(uint64_t(1), uint64_t(kMaxLimitKbps)));
  predict->add_option("--deadline-s", args.deadline_s, "deadline, seconds from the start (default none)")
      ->check(NonNegative());
  predict->add_option("--rtt-ms", args.rtt_ms, "round-trip time, ms (default 5)")->check(NonNegative());
  predict->add_option("--step", args.step, "step of S in percent (default 5: 0, 5, ..., 100)")->check(NonNegative());

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);  // prints help, or the error and a hint
    return code == 0 ? kExitOk : kExitUsage;
  }
  if (timeout_option->count() > 0) global.timeout_s = timeout_s;

  const std::string& id = args.id;
  auto request = [&](const char* op) { return json{{"op", op}, {"id", id}}; };

  if (start->parsed()) {
    json r = {{"op", op::kStart}, {"images", args.images}, {"target", args.target}};
    if (args.network_kbps) r["network_kbps"] = args.network_kbps;
    if (args.disk_kbps) r["disk_kbps"] = args.disk_kbps;
    if (args.overwrite) r["overwrite"] = true;
    if (args.force) r["force"] = true;
    AddMirrorFields(args, &r);
    if (!args.dscp.empty()) r["dscp"] = args.dscp;
    if (args.so_priority >= 0) r["so_priority"] = args.so_priority;
    if (std::string usage = AddCopyFields(args, &r); !usage.empty()) {
      std::cerr << "migratectl: start: " << usage << "\n";
      return kExitUsage;
    }
    return RunRequest(global, r, false, [](const json& answer) {
      std::cout << IdOf(answer) << "\n";
      return kExitOk;
    });
  }
  if (set_mirror->parsed()) {
    json r = request(op::kSetMirrorMode);
    AddMirrorFields(args, &r);
    return RunRequest(global, r, false, [](const json&) { return kExitOk; });
  }
  if (set_net->parsed() || set_disk->parsed()) {
    bool net = set_net->parsed();
    json r = request(net ? op::kSetNetworkLimit : op::kSetDiskLimit);
    r["kbps"] = args.kbps;
    return RunRequest(global, r, false,
                      PrintLine(id + ": " + (net ? "network" : "disk") + " limit " +
                                FormatLimit(args.kbps)));
  }
  if (progress->parsed()) {
    json r = request(op::kQueryProgress);
    r["what"] = args.what;
    return RunRequest(global, r, false, [](const json& answer) {
      std::cout << ProgressBlock(answer);
      return kExitOk;
    });
  }
  if (completion->parsed()) {
    return RunRequest(global, request(op::kQueryCompletion), false, [&](const json& answer) {
      std::cout << id << ": " << (answer.value("completed", false) ? "completed" : "not completed")
                << (answer.value("hybrid", false) ? " (hybrid)" : "")
                << "\n";
      return kExitOk;
    });
  }
  if (finish->parsed()) {
    return RunRequest(global, request(op::kFinish), true,
                      PrintLine(id + ": finished; the source copy is fenced until "
                                     "`migratectl release " + id + "`"));
  }
  if (cancel->parsed()) {
    json r = request(op::kCancel);
    if (args.keep_partial) r["keep_partial"] = true;
    return RunRequest(global, r, false,
                      PrintLine(id + ": cancelled" +
                                (args.keep_partial ? " (target's partial copy kept)" : "")));
  }
  if (verify->parsed()) {
    return RunRequest(global, request(op::kVerify), true,
                      [&](const json& answer) { return PrintVerify(id, answer); });
  }
  if (release->parsed()) {
    return RunRequest(global, request(op::kRelease), false, PrintLine(id + ": released"));
  }
  if (list->parsed()) {
    return RunRequest(global, {{"op", op::kList}}, false, [](const json& answer) {
      std::cout << MigrationTable(answer.value("migrations", json::array()));
      return kExitOk;
    });
  }
  if (status->parsed()) {
    json r = {{"op", op::kStatus}};
    if (!id.empty()) r["id"] = id;
    return RunRequest(global, r, false, PrintStatus);
  }
  if (submit->parsed()) {
    double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    auto r = BuildSubmitRequest(args.submit, now);
    if (!r) {
      std::cerr << "migratectl: " << r.error().message << "\n";
      return kExitUsage;
    }
    return RunRequest(global, r.value(), false, [](const json& answer) {
      std::cout << answer.value("vm", "?") << ": "
                << (answer.value("queued", false) ? std::string("queued")
                                                  : "started as " + answer.value("id", std::string("?")))
                << "\n";
      return kExitOk;
    });
  }
  if (incoming->parsed()) {
    return RunRequest(global, {{"op", op::kIncoming}}, false, [](const json& answer) {
      std::cout << IncomingTable(answer.value("incoming", json::array()));
      return kExitOk;
    });
  }
  if (profile->parsed()) {
    json r = {{"op", op::kProfile}, {"images", args.images}, {"seconds", args.seconds}};
    // Blocks for --seconds: no 10 s default timeout (an explicit --timeout still applies).
    return RunRequest(global, r, true, [](const json& answer) {
      std::cout << ProfileText(answer.value("profile", json::object()));
      return kExitOk;
    });
  }
  if (predict->parsed()) {
    json r = {{"op", op::kPredict}, {"images", args.images}, {"net_kbps", args.net_kbps}};
    auto number = [](const std::string& text) { return std::strtod(text.c_str(), nullptr); };
    if (!args.deadline_s.empty()) r["deadline_s"] = number(args.deadline_s);
    if (!args.rtt_ms.empty()) r["rtt_ms"] = number(args.rtt_ms);
    if (!args.step.empty()) r["step"] = number(args.step);
    return RunRequest(global, r, false, [](const json& answer) {
      std::cout << PredictText(answer);
      // As `migratefs-scheduler predict` (exit 1 there): no S meets the deadline.
      return answer.value("deadline_met", true) ? kExitOk : kExitBadOutcome;
    });
  }
  if (events->parsed()) return RunEvents(global);
  if (watch->parsed()) return RunWatch(global, args.ids);
  return kExitUsage;
}

}  // namespace
}  // namespace migratefs::ctl

int main(int argc, char** argv) { return migratefs::ctl::Main(argc, argv); }
