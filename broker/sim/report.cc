#include "broker/sim/report.h"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace migratefs::sim {

std::string ToJson(const Results& r) {
  nlohmann::ordered_json j;
  j["policy"] = r.policy;
  j["seed"] = r.seed;
  j["load_pct"] = r.load_pct;
  j["deadline_s"] = r.deadline_s;
  j["machines"] = r.machines;
  j["tasks"] = r.tasks;
  j["tasks_completed"] = r.tasks_completed;
  j["missed_deadlines"] = r.missed_deadlines;
  j["important"] = {{"tasks", r.important_tasks}, {"missed_deadlines", r.important_missed}};
  j["sla_violation_periods"] = r.sla_violation_periods;
  j["hot_periods_crossed"] = r.hot_periods_crossed;
  j["migration_time_s"] = {{"mean", r.migration_time_s.mean}, {"p50", r.migration_time_s.p50},
                           {"p90", r.migration_time_s.p90},   {"p99", r.migration_time_s.p99},
                           {"max", r.migration_time_s.max}};
  j["bytes_moved"] = r.bytes_moved;
  j["time_network_limited_s"] = r.time_network_limited_s;
  j["time_disk_limited_s"] = r.time_disk_limited_s;
  j["decisions"] = r.decisions;
  j["backoff_decisions"] = r.backoff_decisions;
  j["release_requests"] = r.release_requests;
  j["simulated_s"] = r.simulated_s;
  j["periods"] = r.periods;
  return j.dump();
}

std::string ToText(const Results& r) {
  char buf[1024];
  std::snprintf(buf, sizeof(buf),
                "policy %s, seed %llu, load %.1f%%, deadline %.0f s, %llu machines\n"
                "tasks %llu (completed %llu, missed deadline %llu; important %llu, missed %llu)\n"
                "SLA violation periods %llu (hot machine-periods crossed %llu)\n"
                "migration time s: mean %.1f  p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n"
                "bytes moved %.4g, network-limited %.0f task-s, disk-limited %.0f task-s\n"
                "decisions %llu (with backoff %llu), release requests %llu\n"
                "simulated %.0f s, %lld periods\n",
                r.policy.c_str(), static_cast<unsigned long long>(r.seed), r.load_pct,
                r.deadline_s, static_cast<unsigned long long>(r.machines),
                static_cast<unsigned long long>(r.tasks),
                static_cast<unsigned long long>(r.tasks_completed),
                static_cast<unsigned long long>(r.missed_deadlines),
                static_cast<unsigned long long>(r.important_tasks),
                static_cast<unsigned long long>(r.important_missed),
                static_cast<unsigned long long>(r.sla_violation_periods),
                static_cast<unsigned long long>(r.hot_periods_crossed),
                r.migration_time_s.mean, r.migration_time_s.p50, r.migration_time_s.p90,
                r.migration_time_s.p99, r.migration_time_s.max, r.bytes_moved,
                r.time_network_limited_s, r.time_disk_limited_s,
                static_cast<unsigned long long>(r.decisions),
                static_cast<unsigned long long>(r.backoff_decisions),
                static_cast<unsigned long long>(r.release_requests), r.simulated_s,
                static_cast<long long>(r.periods));
  return buf;
}

void WriteCsv(const Results& r, std::ostream& out) {
  out << "period,time_s,active_tasks,violations,hot_machines_crossed,migration_bytes,"
         "net_limited,disk_limited\n";
  char line[256];
  for (const PeriodRow& p : r.series) {
    std::snprintf(line, sizeof(line), "%lld,%.0f,%llu,%llu,%llu,%.0f,%llu,%llu\n",
                  static_cast<long long>(p.period), p.time_s,
                  static_cast<unsigned long long>(p.active_tasks),
                  static_cast<unsigned long long>(p.violations),
                  static_cast<unsigned long long>(p.hot_machines_crossed), p.migration_bytes,
                  static_cast<unsigned long long>(p.net_limited),
                  static_cast<unsigned long long>(p.disk_limited));
    out << line;
  }
}

}  // namespace migratefs::sim
