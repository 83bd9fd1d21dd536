#include "net/migration/migration_journal.h"

#include <nlohmann/json.hpp>

namespace migratefs::migration {
namespace {

using nlohmann::json;

std::string Hex(const std::string& raw) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

bool Unhex(const std::string& hex, std::string* raw) {
  if (hex.size() % 2 != 0) return false;
  raw->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    auto nib = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
    int hi = nib(hex[i]), lo = nib(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    *raw += static_cast<char>(hi * 16 + lo);
  }
  return true;
}

json EncodeRequest(const StartRequest& r) {
  json j = {{"images", r.images},
            {"target", r.target},
            {"network_kbps", r.network_kbps},
            {"disk_kbps", r.disk_kbps},
            {"overwrite", r.overwrite},
            {"force", r.force},
            {"mirror_async", r.mirror.async},
            {"backlog_max_bytes", r.mirror.backlog_max_bytes},
            {"backlog_low_pct", r.mirror.backlog_low_pct},
            {"backlog_high_pct", r.mirror.backlog_high_pct},
            {"hybrid", r.copy.hybrid},
            {"precopy_pct", r.copy.precopy_pct},
            {"postcopy_timeout_s", r.copy.postcopy_timeout_s}};
  if (r.dscp) j["dscp"] = *r.dscp;
  if (r.so_priority) j["so_priority"] = *r.so_priority;
  return j;
}

StartRequest DecodeRequest(const json& j) {
  StartRequest r;
  r.images = j.at("images").get<std::vector<std::string>>();
  r.target = j.at("target").get<std::string>();
  r.network_kbps = j.at("network_kbps").get<uint64_t>();
  r.disk_kbps = j.at("disk_kbps").get<uint64_t>();
  r.overwrite = j.at("overwrite").get<bool>();
  r.force = j.at("force").get<bool>();
  r.mirror.async = j.at("mirror_async").get<bool>();
  r.mirror.backlog_max_bytes = j.at("backlog_max_bytes").get<uint64_t>();
  r.mirror.backlog_low_pct = j.at("backlog_low_pct").get<unsigned>();
  r.mirror.backlog_high_pct = j.at("backlog_high_pct").get<unsigned>();
  // Absent in the journal of a worker from before hybrid copy: pre-copy.
  r.copy.hybrid = j.value("hybrid", false);
  r.copy.precopy_pct = j.value("precopy_pct", 100u);
  r.copy.postcopy_timeout_s = j.value("postcopy_timeout_s", uint64_t(600));
  if (j.contains("dscp")) r.dscp = j.at("dscp").get<uint8_t>();
  if (j.contains("so_priority")) r.so_priority = j.at("so_priority").get<uint32_t>();
  return r;
}

}  // namespace

std::string EncodeJournal(const JournalDoc& doc) {
  json running = json::array();
  for (const JournalEntry& e : doc.running)
    running.push_back(
        {{"id", e.id}, {"request", EncodeRequest(e.request)}, {"resumed", e.resumed}, {"postcopy", e.postcopy}});
  return json{{"version", 1}, {"instance_id", Hex(doc.instance_id)}, {"next_id", doc.next_id}, {"running", running}}
      .dump();
}

Result<JournalDoc> DecodeJournal(const std::string& text) {
  JournalDoc doc;
  if (text.empty()) return doc;
  try {
    json j = json::parse(text);
    if (j.at("version").get<int>() != 1) {
      return MakeError(errc::kInvalidArgument, "restart journal of version " + j.at("version").dump());
    }
    if (!Unhex(j.at("instance_id").get<std::string>(), &doc.instance_id)) {
      return MakeError(errc::kInvalidArgument, "restart journal: instance_id is not hex");
    }
    doc.next_id = j.at("next_id").get<uint64_t>();
    for (const json& e : j.at("running")) {
      doc.running.push_back(
          {e.at("id").get<std::string>(), DecodeRequest(e.at("request")), e.value("resumed", uint32_t(0)),
           e.value("postcopy", false)});
    }
  } catch (const json::exception& e) {
    return MakeError(errc::kInvalidArgument, std::string("restart journal: ") + e.what());
  }
  return doc;
}

}  // namespace migratefs::migration
