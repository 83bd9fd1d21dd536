#include "broker/ctl/format.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <utility>
#include <vector>

#include "broker/policy/predict_format.h"
#include "migratefs/migration_service.h"

namespace migratefs::ctl {

using nlohmann::json;

namespace {

// Lenient field access: the daemon may be newer or older than this tool.
double Number(const json& object, const char* key, double if_absent = 0) {
  if (!object.is_object()) return if_absent;
  auto it = object.find(key);
  return it != object.end() && it->is_number() ? it->get<double>() : if_absent;
}

std::string Text(const json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

const json& Member(const json& object, const char* key) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

std::string Printf(const char* format, double value) {
  char buffer[64];
  snprintf(buffer, sizeof(buffer), format, value);
  return buffer;
}

// value in base units -> "1.5 M<unit>"-style text with decimal prefixes.
std::string Scaled(double value, const char* const* units, int unit_count) {
  int unit = 0;
  while (std::fabs(value) >= 1000 && unit + 1 < unit_count) {
    value /= 1000;
    ++unit;
  }
  const char* format = unit == 0 || value >= 100 ? "%.0f " : value >= 10 ? "%.1f " : "%.2f ";
  return Printf(format, value) + units[unit];
}

bool CompletedPhase(const std::string& phase) {
  return phase == phase::kMirror || phase == phase::kFinished;
}

std::string Pad(std::string text, size_t width) {
  if (text.size() < width) text.append(width - text.size(), ' ');
  return text;
}

bool Hybrid(const json& progress) { return Text(progress, "mode") == "hybrid"; }

std::string Count(const json& object, const char* key) {
  return std::to_string(static_cast<uint64_t>(std::max(0.0, Number(object, key))));
}

// "p50/p99 1.2/8.5 ms" of a "fetch_latency_ms" object.
std::string Latency(const json& object) {
  const json& ms = Member(object, "fetch_latency_ms");
  return "p50/p99 " + Printf("%.1f", Number(ms, "p50")) + "/" + Printf("%.1f", Number(ms, "p99")) + " ms";
}

}  // namespace

std::string FormatRate(double kbps) {
  static const char* const kUnits[] = {"KB/s", "MB/s", "GB/s", "TB/s"};
  return Scaled(kbps, kUnits, 4);
}

std::string FormatLimit(uint64_t kbps) {
  return kbps == 0 ? "none" : FormatRate(static_cast<double>(kbps));
}

std::string FormatBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KB", "MB", "GB", "TB", "PB"};
  return Scaled(static_cast<double>(bytes), kUnits, 6);
}

std::string FormatEta(double seconds) {
  if (seconds < 0 || !std::isfinite(seconds)) return "-";
  auto total = static_cast<uint64_t>(std::llround(seconds));
  char buffer[64];
  if (total < 60) {
    snprintf(buffer, sizeof(buffer), "%llus", static_cast<unsigned long long>(total));
  } else if (total < 3600) {
    snprintf(buffer, sizeof(buffer), "%llum%02llus", static_cast<unsigned long long>(total / 60),
             static_cast<unsigned long long>(total % 60));
  } else {
    snprintf(buffer, sizeof(buffer), "%lluh%02llum",
             static_cast<unsigned long long>(total / 3600),
             static_cast<unsigned long long>(total % 3600 / 60));
  }
  return buffer;
}

bool IsTerminalPhase(const std::string& phase) {
  return phase == phase::kFinished || phase == phase::kFailed || phase == phase::kCancelled;
}

double PercentDone(const json& migration) {
  const json& progress = Member(migration, "progress");
  if (Hybrid(progress) && Text(progress, "phase") != phase::kFinished) {
    double blocks = Number(progress, "data_blocks");
    if (blocks > 0) return 100 * (blocks - std::clamp(Number(progress, "blocks_remote"), 0.0, blocks)) / blocks;
  }
  if (CompletedPhase(Text(progress, "phase"))) return 100;
  double total = Number(progress, "bytes_total");
  if (total <= 0) return 0;
  double left = std::clamp(Number(progress, "bytes_left"), 0.0, total);
  return 100 * (total - left) / total;
}

std::string ProgressBar(double percent, int width) {
  int filled = static_cast<int>(std::clamp(percent, 0.0, 100.0) / 100 * width + 0.5);
  return "[" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
}

std::string SummaryLine(const json& migration) {
  const json& progress = Member(migration, "progress");
  std::string phase = Text(progress, "phase");
  std::string line = Pad(Text(migration, "id"), 6) + Pad(phase, 11) +
                     Pad(Printf("%5.1f%%", PercentDone(migration)), 8) +
                     Pad(FormatRate(Number(progress, "network_kbps")), 11) + "ETA " +
                     Pad(FormatEta(Number(progress, "eta_s", -1)), 8) + "dirty " +
                     std::to_string(static_cast<uint64_t>(Number(progress, "dirty_blocks"))) +
                     " blocks";
  std::string reason = Text(progress, "pause_reason");
  if (!reason.empty()) line += " (" + reason + ")";
  return line;
}

std::string IdOf(const json& migration) { return Text(migration, "id"); }

std::string PhaseOf(const json& migration) { return Text(Member(migration, "progress"), "phase"); }

std::string BarLine(const json& migration, int bar_width) {
  const json& progress = Member(migration, "progress");
  double percent = PercentDone(migration);
  std::string line = Text(migration, "id") + " " + ProgressBar(percent, bar_width) + " " +
                     Printf("%5.1f%%", percent) + "  " + Pad(Text(progress, "phase"), 10) +
                     FormatRate(Number(progress, "network_kbps")) + "  ETA " +
                     FormatEta(Number(progress, "eta_s", -1));
  std::string reason = Text(progress, "pause_reason");
  if (!reason.empty()) line += "  (" + reason + ")";
  return line;
}

std::string ModeText(const json& p) {
  if (!Hybrid(p)) return Text(p, "mode").empty() ? "precopy" : Text(p, "mode");
  return "hybrid: " + Count(p, "precopy_pct") + "% pre-copy, " + Count(p, "blocks_remote") + " blocks remote, " +
         FormatBytes(static_cast<uint64_t>(Number(p, "bytes_fetched_on_demand"))) + " fetched on demand (" +
         Latency(p) + "), " + FormatBytes(static_cast<uint64_t>(Number(p, "bytes_pulled"))) + " pulled";
}

std::string ProgressBlock(const json& p) {
  std::string out;
  auto row = [&out](const char* key, const std::string& value) {
    out += Pad(std::string(key) + ":", 16) + value + "\n";
  };
  row("phase", Text(p, "phase"));
  if (!Text(p, "pause_reason").empty()) row("reason", Text(p, "pause_reason"));
  row("mode", ModeText(p));
  if (p.contains("kbps")) row("rate", FormatRate(Number(p, "kbps")));
  row("network rate", FormatRate(Number(p, "network_kbps")));
  row("disk rate", FormatRate(Number(p, "disk_kbps")));
  row("sent", FormatBytes(static_cast<uint64_t>(Number(p, "bytes_sent"))) + " of " +
                  FormatBytes(static_cast<uint64_t>(Number(p, "bytes_total"))));
  row("mirrored", FormatBytes(static_cast<uint64_t>(Number(p, "bytes_mirrored"))) +
                      " of VM writes (phase 3)");
  row("left", FormatBytes(static_cast<uint64_t>(Number(p, "bytes_left"))) + " in " +
                  std::to_string(static_cast<uint64_t>(Number(p, "blocks_left"))) + " blocks");
  row("dirty", std::to_string(static_cast<uint64_t>(Number(p, "dirty_blocks"))) +
                   " blocks, dirtied at " + FormatRate(Number(p, "dirty_kbps")));
  row("ETA", FormatEta(Number(p, "eta_s", -1)));
  row("network limit", FormatLimit(static_cast<uint64_t>(Number(p, "network_limit_kbps"))));
  row("disk limit", FormatLimit(static_cast<uint64_t>(Number(p, "disk_limit_kbps"))));
  if (p.contains("mirror_mode")) {
    std::string mode = Text(p, "mirror_mode");
    if (mode != "sync") {
      mode += ", backlog " + FormatBytes(static_cast<uint64_t>(Number(p, "backlog_bytes"))) + " of " +
              FormatBytes(static_cast<uint64_t>(Number(p, "backlog_max_bytes"))) +
              Printf(", %.1f s synchronous", Number(p, "mirror_sync_s"));
    }
    row("mirror", mode);
  }
  if (p.contains("dscp") && p["dscp"].is_string()) row("dscp", Text(p, "dscp"));
  return out;
}

std::string MigrationTable(const json& migrations) {
  if (!migrations.is_array() || migrations.empty()) return "no migrations\n";
  std::string out = Pad("ID", 6) + Pad("PHASE", 11) + Pad("DONE", 8) + Pad("NET RATE", 11) +
                    Pad("ETA", 12) + Pad("TARGET", 22) + "IMAGES\n";
  for (const json& m : migrations) {
    const json& progress = Member(m, "progress");
    std::string images;
    for (const json& image : Member(m, "images")) {
      if (image.is_string()) images += (images.empty() ? "" : ",") + image.get<std::string>();
    }
    out += Pad(Text(m, "id"), 6) + Pad(Text(progress, "phase"), 11) +
           Pad(Printf("%5.1f%%", PercentDone(m)), 8) +
           Pad(FormatRate(Number(progress, "network_kbps")), 11) +
           Pad(FormatEta(Number(progress, "eta_s", -1)), 12) + Pad(Text(m, "target"), 22) +
           images + "\n";
    if (Hybrid(progress)) out += "      " + ModeText(progress) + "\n";
  }
  return out;
}

std::string IncomingTable(const json& incoming) {
  if (!incoming.is_array() || incoming.empty()) return "no incoming copies\n";
  std::string out = Pad("IMAGE", 24) + Pad("STATE", 11) + Pad("REMOTE", 18) + Pad("PULLED", 10) +
                    Pad("ON DEMAND", 20) + "FETCH LATENCY\n";
  for (const json& copy : incoming) {
    std::string remote = Count(copy, "blocks_remote") + " of " + Count(copy, "blocks_total");
    std::string fetched = FormatBytes(static_cast<uint64_t>(Number(copy, "bytes_fetched_on_demand"))) + " in " +
                          Count(copy, "fetches");
    std::string line = Pad(Text(copy, "image"), 24) + Pad(Text(copy, "state"), 11) + Pad(remote, 18) +
                       Pad(FormatBytes(static_cast<uint64_t>(Number(copy, "bytes_pulled"))), 10) +
                       Pad(fetched, 20) + Latency(copy);
    if (!Text(copy, "reason").empty()) line += "  (" + Text(copy, "reason") + ")";
    out += line + "\n";
  }
  return out;
}

std::string EventText(const json& event) {
  auto seconds = static_cast<time_t>(Number(event, "time"));
  char when[32] = "";
  struct tm local;
  if (localtime_r(&seconds, &local) != nullptr) {
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &local);
  }
  std::string line = std::string(when) + " " + Text(event, "id") + " " + Text(event, "event") +
                     " -> " + Text(event, "phase");
  std::string detail = Text(event, "detail");
  if (!detail.empty()) line += ": " + detail;
  return line;
}

std::string ProfileText(const json& profile, size_t hottest) {
  std::string out;
  const json& images = Member(profile, "images");
  if (!images.is_array() || images.empty()) return "no images profiled\n";
  char line[512];
  for (const json& im : images) {
    const double block = Number(im, "block_bytes", 524288);
    const double size = Number(im, "image_bytes");
    const double window = Number(im, "window_s");
    const uint64_t blocks = block > 0 ? uint64_t((size + block - 1) / block) : 0;
    std::vector<std::pair<uint64_t, double>> written;  // (block, writes)
    const json& writes = Member(im, "writes");
    if (writes.is_array()) {
      for (size_t k = 0; k < writes.size(); ++k) {
        const json& w = writes[k];
        if (w.is_array() && w.size() == 2 && w[0].is_number() && w[1].is_number()) {
          if (w[1].get<double>() > 0) written.push_back({w[0].get<uint64_t>(), w[1].get<double>()});
        } else if (w.is_number() && w.get<double>() > 0) {
          written.push_back({k, w.get<double>()});
        }
      }
    }
    double total = 0;
    for (auto& [b, n] : written) total += n;
    std::string data;
    const json& ranges = Member(im, "data");
    if (ranges.is_array()) {
      double n = 0;
      for (const json& r : ranges)
        if (r.is_array() && r.size() == 2 && r[1].is_number()) n += r[1].get<double>();
      std::snprintf(line, sizeof(line), "%.0f data blocks", n);
      data = line;
    } else {
      data = "data blocks unknown";
    }
    std::snprintf(line, sizeof(line), "%s: %zu of %llu blocks written (%s of %.0f KiB), %.1f writes/s over %.1f s, %s per write\n",
                  Text(im, "name").empty() ? "?" : Text(im, "name").c_str(), written.size(),
                  (unsigned long long)blocks, data.c_str(), block / 1024, window > 0 ? total / window : 0.0, window,
                  FormatBytes(uint64_t(Number(im, "write_bytes", 4096))).c_str());
    out += line;
    if (written.empty() || hottest == 0) continue;
    std::stable_sort(written.begin(), written.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    out += "  hottest:";
    for (size_t k = 0; k < written.size() && k < hottest; ++k) {
      std::snprintf(line, sizeof(line), "%s block %llu (%.0f writes, %.1f/s)", k == 0 ? "" : ",",
                    (unsigned long long)written[k].first, written[k].second,
                    window > 0 ? written[k].second / window : 0.0);
      out += line;
    }
    out += "\n";
  }
  return out;
}

std::string PredictText(const json& answer) {
  auto prediction = policy::PredictionFromJson(answer);
  if (!prediction.ok()) return answer.dump() + "\n";
  policy::PredictInput in;  // only what the header shows
  const json& images = Member(answer, "images");
  in.images.resize(images.is_array() ? images.size() : 0);
  in.net_bps = Number(answer, "net_kbps") * 1000;
  in.rtt_s = Number(answer, "rtt_ms") / 1000;
  in.deadline_s = Number(answer, "deadline_s");
  return policy::PredictionText(in, prediction.value());
}

}  // namespace migratefs::ctl
