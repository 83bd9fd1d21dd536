#include "broker/scheduler/runner.h"

#include <algorithm>
#include <cstdio>

#include "broker/daemon/line_socket.h"
#include "broker/daemon/peer_auth.h"

namespace migratefs::scheduler {

using nlohmann::json;

namespace {

bool Terminal(const json& entry) {
  std::string state = entry.value("state", "");
  return state == "finished" || state == "failed" || state == "cancelled" || state == "not_submitted";
}

// One authenticated request to a broker; the answer object or an error.
Result<json> Ask(const std::string& address, json body, const RunOptions& o) {
  std::string line = broker::SealMessage(o.key, std::move(body), o.from, o.now());
  auto answer = broker::RoundTrip(address, line,
                                  broker::Millis(static_cast<int64_t>(o.rpc_timeout_s * 1000)));
  if (!answer) return answer.error();
  json a = json::parse(answer.value(), nullptr, false);
  if (!a.is_object() || !a.contains("ok")) return MakeError(errc::kInternal, "odd answer: " + answer.value());
  if (a["ok"] != true) {
    return MakeError(errc::kInternal, a["error"].value("code", "?") + ": " + a["error"].value("message", ""));
  }
  return a;
}

}  // namespace

json RunPlan(const Plan& original, const Topology& topology, const RunOptions& o) {
  double submitted_at = o.now();
  Plan plan = original;
  // Contention: the link samples of every source broker.
  std::map<std::string, json> status;
  for (const Batch& batch : plan.batches) {
    for (const std::string& host : batch.sources) {
      if (status.count(host)) continue;
      auto answer = Ask(topology.FindHost(host)->broker, {{"op", "status"}}, o);
      if (answer) status[host] = answer.value();
    }
  }
  std::map<size_t, double> utilization;
  for (size_t b = 0; b < plan.batches.size(); ++b) utilization[b] = BatchUtilization(plan.batches[b], status);
  ApplyStrategies(&plan, topology, utilization, o.strategy, o.contention);
  if (!o.wait && !plan.after.empty()) {  // nobody stays to start the next of a chain
    plan.after.clear();
    for (json& s : plan.strategies) {
      if (!s["serial"].empty()) s["note"] = "--no-wait: the serial tasks were submitted at once";
    }
  }

  std::vector<json> entries;
  std::map<std::string, size_t> index;
  auto submit = [&](const broker::TaskSpec& spec, json& entry) {
    const std::string& address = topology.FindHost(spec.source)->broker;
    auto answer = Ask(address, {{"op", "submit"}, {"task", broker::ToJson(spec)}}, o);
    entry["submitted"] = o.now();
    if (answer) {
      entry["state"] = answer.value().value("queued", false) ? "queued" : "running";
      entry["id"] = answer.value().value("id", "");
    } else {
      entry["state"] = "not_submitted";
      entry["error"] = "submit to " + spec.source + " (" + address + "): " + answer.error().message;
      entry["met_deadline"] = false;
      entry["broker_reachable"] = answer.error().code != errc::kPeerUnreachable;
      std::fprintf(stderr, "migratefs-scheduler: %s: %s\n", spec.vm.c_str(),
                   entry["error"].get<std::string>().c_str());
    }
  };
  for (const broker::TaskSpec& spec : plan.specs) {
    json entry = {{"vm", spec.vm},
                  {"source", spec.source},
                  {"target", spec.target},
                  {"important", spec.important},
                  {"priority", policy::ToString(spec.EffectiveClass())},
                  {"rank", spec.rank},
                  {"path", spec.path},
                  {"deadline", spec.deadline_s},
                  {"deadline_s", spec.deadline_s - submitted_at},
                  {"broker_reachable", true}};
    if (spec.max_kbps > 0) entry["max_kbps"] = spec.max_kbps;
    if (plan.after.count(spec.vm)) {
      entry["after"] = plan.after.at(spec.vm);
      entry["state"] = "waiting";
    } else {
      submit(spec, entry);
    }
    index[spec.vm] = entries.size();
    entries.push_back(std::move(entry));
  }
  // Starts every waiting task whose predecessor has ended.
  auto release_chains = [&] {
    for (const broker::TaskSpec& spec : plan.specs) {
      json& entry = entries[index[spec.vm]];
      if (entry["state"] != "waiting" || !Terminal(entries[index[entry["after"].get<std::string>()]])) continue;
      submit(spec, entry);
    }
  };
  double latest = submitted_at;
  for (const broker::TaskSpec& spec : plan.specs) latest = std::max(latest, spec.deadline_s);
  double give_up = submitted_at + (o.timeout_s > 0 ? o.timeout_s : latest - submitted_at + 120);

  while (o.wait && !std::all_of(entries.begin(), entries.end(), Terminal) && o.now() < give_up) {
    o.sleep(o.poll_s);
    for (json& entry : entries) {
      if (Terminal(entry) || entry["state"] == "waiting") continue;
      const std::string& address = topology.FindHost(entry["source"])->broker;
      auto answer = Ask(address, {{"op", "task_status"}, {"vm", entry["vm"]}}, o);
      if (!answer) {
        if (entry["broker_reachable"] == true) {
          std::fprintf(stderr, "migratefs-scheduler: broker %s (%s) does not answer: %s\n",
                       entry["source"].get<std::string>().c_str(), address.c_str(),
                       answer.error().message.c_str());
        }
        entry["broker_reachable"] = false;
        continue;
      }
      entry["broker_reachable"] = true;
      const json& record = answer.value()["task"];
      for (const char* key : {"state", "error", "phase", "duration_s", "met_deadline", "bytes_total",
                              "bytes_sent", "bytes_left", "limited_s", "network_limited_s",
                              "disk_limited_s", "backoff_periods", "release_requests_sent",
                              "started", "finished", "hypervisor", "network_limit_kbps",
                              "disk_limit_kbps", "slack", "ceiling_kbps", "queued_s"}) {
        if (record.contains(key)) entry[key] = record[key];
      }
    }
    release_chains();
  }
  json summary = {{"tasks", entries.size()}, {"met", 0}, {"missed", 0}, {"failed", 0},
                  {"unfinished", 0}, {"limited_s", 0.0}};
  double now = o.now();
  for (json& entry : entries) {
    std::string state = entry.value("state", "");
    if (state == "finished") {
      summary[entry.value("met_deadline", false) ? "met" : "missed"] =
          summary[entry.value("met_deadline", false) ? "met" : "missed"].get<int>() + 1;
    } else if (state == "failed" || state == "cancelled" || state == "not_submitted") {
      summary["failed"] = summary["failed"].get<int>() + 1;
      entry["met_deadline"] = false;
    } else {
      summary["unfinished"] = summary["unfinished"].get<int>() + 1;
      entry["met_deadline"] = now > entry["deadline"].get<double>() ? json(false) : json(nullptr);
    }
    summary["limited_s"] = summary["limited_s"].get<double>() + entry.value("limited_s", 0.0);
  }
  json shared = json::object();
  for (const auto& [section, vms] : plan.users) {
    if (vms.size() >= 2) shared[section] = vms;
  }
  return {{"submitted_at", submitted_at},
          {"tasks", entries},
          {"summary", summary},
          {"shared_sections", shared},
          {"strategies", plan.strategies}};
}

bool AllMet(const json& report) {
  const json& s = report["summary"];
  return s["met"].get<int>() == s["tasks"].get<int>();
}

}  // namespace migratefs::scheduler
