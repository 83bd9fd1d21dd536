#include "broker/policy/predict_format.h"

#include <cstdio>

namespace migratefs::policy {

using nlohmann::json;

json ProfileJson(const ImageProfile& im) {
  auto counts = [](const std::vector<BlockCount>& list) {
    json out = json::array();
    for (const BlockCount& c : list) out.push_back(json::array({c.block, c.count}));
    return out;
  };
  json doc = {{"name", im.name},
              {"image_bytes", im.image_bytes},
              {"block_bytes", im.block_bytes},
              {"window_s", im.window_s},
              {"writes", counts(im.writes)},
              {"write_bytes", im.write_bytes}};
  if (im.name.empty()) doc.erase("name");
  if (!im.reads.empty()) doc["reads"] = counts(im.reads);
  if (im.data_known) {
    json data = json::array();
    for (const BlockRange& r : im.data) data.push_back(json::array({r.first, r.count}));
    doc["data"] = std::move(data);
  }
  return doc;
}

json ProfilesJson(const std::vector<ImageProfile>& profiles) {
  json images = json::array();
  for (const ImageProfile& im : profiles) images.push_back(ProfileJson(im));
  return {{"images", std::move(images)}};
}

std::vector<double> SPercentSteps(double step) {
  std::vector<double> out;
  if (!(step > 0) || step > 100) return {100};
  for (int k = 0; k * step < 100 - 1e-9; ++k) out.push_back(k * step);
  out.push_back(100);
  return out;
}

namespace {

std::string Line(const PredictRow& r, const char* label) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "%-8s %9.1f %9.1f %9.1f %9.1f %8.2f %-9s %-8s %9.2f\n", label, r.total_s, r.remote_s,
                r.fetches, r.stall_s, r.p_converge, r.converges ? "yes" : "no", r.meets_deadline ? "yes" : "no",
                r.cost);
  return buf;
}

json RowJson(const PredictRow& r) {
  return {{"s", r.s_percent},
          {"t_s", r.total_s},
          {"u_s", r.remote_s},
          {"fetches", r.fetches},
          {"stall_s", r.stall_s},
          {"fetch_stall_s", r.fetch_stall_s},
          {"mirror_stall_s", r.mirror_stall_s},
          {"mirrored_writes", r.mirrored_writes},
          {"bulk_s", r.bulk_s},
          {"iterate_s", r.iterate_s},
          {"final_s", r.final_s},
          {"precopy_bytes", r.precopy_bytes},
          {"remote_bytes", r.remote_bytes},
          {"p_converge", r.p_converge},
          {"converges", r.converges},
          {"meets_deadline", r.meets_deadline},
          {"cost", r.cost}};
}

double Num(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_number() ? it->get<double>() : 0.0;
}
bool Flag(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_boolean() && it->get<bool>();
}

PredictRow RowFromJson(const json& o) {
  PredictRow r;
  r.s_percent = Num(o, "s");
  r.total_s = Num(o, "t_s");
  r.remote_s = Num(o, "u_s");
  r.fetches = Num(o, "fetches");
  r.stall_s = Num(o, "stall_s");
  r.fetch_stall_s = Num(o, "fetch_stall_s");
  r.mirror_stall_s = Num(o, "mirror_stall_s");
  r.mirrored_writes = Num(o, "mirrored_writes");
  r.bulk_s = Num(o, "bulk_s");
  r.iterate_s = Num(o, "iterate_s");
  r.final_s = Num(o, "final_s");
  r.precopy_bytes = Num(o, "precopy_bytes");
  r.remote_bytes = Num(o, "remote_bytes");
  r.p_converge = Num(o, "p_converge");
  r.converges = Flag(o, "converges");
  r.meets_deadline = Flag(o, "meets_deadline");
  r.cost = Num(o, "cost");
  return r;
}

}  // namespace

std::string PredictionText(const PredictInput& in, const Prediction& p) {
  std::string out;
  char buf[512];
  std::string deadline = "none";
  if (in.deadline_s > 0) {
    std::snprintf(buf, sizeof(buf), "%g s", in.deadline_s);
    deadline = buf;
  }
  std::snprintf(buf, sizeof(buf),
                "%zu image(s), %.0f bytes of data, %.1f writes/s; link %.0f KB/s, RTT %.1f ms, deadline %s\n",
                in.images.size(), p.data_bytes, p.writes_per_s, in.net_bps / 1000, in.rtt_s * 1000,
                deadline.c_str());
  out += buf;
  std::snprintf(buf, sizeof(buf), "%-8s %9s %9s %9s %9s %8s %-9s %-8s %9s\n", "S", "T_s", "U_s", "fetches",
                "stall_s", "p_conv", "converges", "deadline", "cost");
  out += buf;
  for (const PredictRow& r : p.rows) {
    std::snprintf(buf, sizeof(buf), "%g", r.s_percent);
    out += Line(r, buf);
  }
  out += Line(p.precopy, "pre-copy");
  std::snprintf(buf, sizeof(buf), "recommended S = %g%s: %s\n", p.recommended_s,
                p.recommended_s >= 100 ? " (pure pre-copy)" : " (hybrid)", p.reason.c_str());
  out += buf;
  return out;
}

json PredictionJson(const Prediction& p) {
  json rows = json::array();
  for (const PredictRow& r : p.rows) rows.push_back(RowJson(r));
  return {{"rows", rows},
          {"precopy", RowJson(p.precopy)},
          {"recommended_s", p.recommended_s},
          {"deadline_met", p.deadline_met},
          {"reason", p.reason},
          {"data_bytes", p.data_bytes},
          {"writes_per_s", p.writes_per_s}};
}

Result<Prediction> PredictionFromJson(const json& doc) {
  if (!doc.is_object() || !doc.contains("rows") || !doc["rows"].is_array() || !doc.contains("precopy") ||
      !doc["precopy"].is_object())
    return MakeError(errc::kInvalidArgument, "a prediction needs \"rows\" (an array) and \"precopy\" (an object)");
  Prediction p;
  for (const json& row : doc["rows"])
    if (row.is_object()) p.rows.push_back(RowFromJson(row));
  p.precopy = RowFromJson(doc["precopy"]);
  p.recommended_s = doc.contains("recommended_s") ? Num(doc, "recommended_s") : 100;
  p.deadline_met = !doc.contains("deadline_met") || Flag(doc, "deadline_met");
  if (doc.contains("reason") && doc["reason"].is_string()) p.reason = doc["reason"].get<std::string>();
  p.data_bytes = Num(doc, "data_bytes");
  p.writes_per_s = Num(doc, "writes_per_s");
  return p;
}

}  // namespace migratefs::policy
