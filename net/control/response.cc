#include "net/control/response.h"

#include <utility>

#include "broker/policy/predict_format.h"
#include "net/socket_marking.h"

namespace migratefs::control {

using nlohmann::json;

namespace {

json WithTag(json answer, const Tag& tag) {
  if (tag) answer["req"] = *tag;
  return answer;
}

json LatencyFields(double p50_ms, double p99_ms) { return {{"p50", p50_ms}, {"p99", p99_ms}}; }

}  // namespace

json OkAnswer(json fields, const Tag& tag) {
  json answer = {{"ok", true}};
  if (fields.is_object()) answer.update(fields);
  return WithTag(std::move(answer), tag);
}

json ErrorAnswer(const Error& error, const Tag& tag) {
  json answer = {{"ok", false}, {"error", {{"code", error.code}, {"message", error.message}}}};
  return WithTag(std::move(answer), tag);
}

json ProgressFields(const Progress& p) {
  json fields = {
      {"phase", p.phase},
      {"pause_reason", p.pause_reason},
      {"kbps", p.kbps},
      {"bytes_total", p.bytes_total},
      {"bytes_sent", p.bytes_sent},
      {"bytes_mirrored", p.bytes_mirrored},
      {"bytes_left", p.bytes_left},
      {"blocks_left", p.blocks_left},
      {"dirty_blocks", p.dirty_blocks},
      {"dirty_kbps", p.dirty_kbps},
      {"network_kbps", p.network_kbps},
      {"disk_kbps", p.disk_kbps},
      {"eta_s", p.eta_s},
      {"network_limit_kbps", p.network_limit_kbps},
      {"disk_limit_kbps", p.disk_limit_kbps},
      // The peer connection's marking: the DSCP's name ("AF41"; a number's digits when
      // it has none) and the socket priority; null = not marked.
      {"dscp", p.dscp ? json(net::DscpName(*p.dscp)) : json(nullptr)},
      {"so_priority", p.so_priority ? json(*p.so_priority) : json(nullptr)},
      // Phase 3's mirror (mirror_backlog.h): "sync", "async", "async-throttled".
      {"mirror_mode", p.mirror_mode},
      {"backlog_bytes", p.backlog_bytes},
      {"backlog_max_bytes", p.backlog_max_bytes},
      {"mirror_sync_s", p.mirror_sync_s},
      {"resumed", p.resumed},
      // How the image reaches the target (CopyMode): "precopy" or "hybrid".
      {"mode", p.mode},
  };
  if (p.mode == "hybrid") {
    fields.update({
        {"precopy_pct", p.precopy_pct},
        {"data_blocks", p.data_blocks},
        {"blocks_remote", p.blocks_remote},
        {"bytes_pulled", p.bytes_pulled},
        {"bytes_fetched_on_demand", p.bytes_fetched_on_demand},
        {"fetch_latency_ms", LatencyFields(p.fetch_latency_p50_ms, p.fetch_latency_p99_ms)},
    });
  }
  return fields;
}

json MigrationFields(const MigrationInfo& info) {
  return {
      {"id", info.id},
      {"images", info.images},
      {"target", info.target},
      {"completed", info.completed},
      {"progress", ProgressFields(info.progress)},
  };
}

json VerifyFields(const VerifyReport& report) {
  json mismatches = json::array();
  for (const VerifyReport::Range& range : report.mismatches) {
    mismatches.push_back(
        {{"image", range.image}, {"offset", range.offset}, {"length", range.length}});
  }
  return {
      {"identical", report.identical},
      {"blocks_compared", report.blocks_compared},
      {"mismatches", std::move(mismatches)},
  };
}

json ListFields(const std::vector<MigrationInfo>& migrations) {
  json list = json::array();
  for (const MigrationInfo& info : migrations) list.push_back(MigrationFields(info));
  return {{"migrations", std::move(list)}};
}

json IncomingFields(const std::vector<IncomingInfo>& incoming) {
  json list = json::array();
  for (const IncomingInfo& copy : incoming) {
    json entry = {
        {"image", copy.image},
        {"state", copy.state},
        {"blocks_total", copy.blocks_total},
        {"blocks_remote", copy.blocks_remote},
        {"bytes_pulled", copy.bytes_pulled},
        {"bytes_fetched_on_demand", copy.bytes_fetched_on_demand},
        {"fetches", copy.fetches},
        {"fetch_latency_ms", LatencyFields(copy.fetch_latency_p50_ms, copy.fetch_latency_p99_ms)},
    };
    if (!copy.reason.empty()) entry["reason"] = copy.reason;
    list.push_back(std::move(entry));
  }
  return {{"incoming", std::move(list)}};
}

json ProfileFields(const std::vector<policy::ImageProfile>& profiles) {
  return {{"profile", policy::ProfilesJson(profiles)}};
}

json PredictFields(const PredictRequest& request, const policy::Prediction& prediction) {
  json fields = policy::PredictionJson(prediction);
  fields.update({
      {"images", request.images},
      {"net_kbps", request.net_kbps},
      {"deadline_s", request.deadline_s},
      {"rtt_ms", request.rtt_ms},
      {"step", request.step},
  });
  return fields;
}

json EventLine(const Event& event) {
  return {
      {"event", event.type},
      {"id", event.id},
      {"phase", event.phase},
      {"detail", event.detail},
      {"time", event.time},
  };
}

std::string ToLine(const json& answer) {
  std::string line = answer.dump(-1, ' ', false, json::error_handler_t::replace);
  line.push_back('\n');
  return line;
}

}  // namespace migratefs::control
