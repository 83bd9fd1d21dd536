// Human-readable renderings of control-socket answers for migratectl. Pure functions of
// the JSON the daemon sends (net/control/README.md); missing fields show as defaults.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace migratefs::ctl {

std::string FormatRate(double kbps);        // "850 KB/s", "12.3 MB/s", "1.25 GB/s"
std::string FormatLimit(uint64_t kbps);     // FormatRate, or "none" for 0
std::string FormatBytes(uint64_t bytes);    // "512 B", "1.5 MB" (1 KB = 1000 bytes)
std::string FormatEta(double seconds);      // "12s", "3m05s", "1h02m", or "-" when < 0

// Share of the data on the target, 0..100: 100 once the migration is completed or later;
// else (bytes_total - bytes_left) / bytes_total. Hybrid until finished: the share of
// data blocks there, (data_blocks - blocks_remote) / data_blocks, since completion (and
// postcopy) come before all of them are.
double PercentDone(const nlohmann::json& migration);
// True for the phases a migration never leaves: finished, failed, cancelled.
bool IsTerminalPhase(const std::string& phase);

std::string ProgressBar(double percent, int width);  // "[#####.....]", width inside
// One line about one migration (an element of list's "migrations"), for watch and list:
// "m1  dirty      45.2%  12.3 MB/s  ETA 1m20s  dirty 12 blocks".
std::string SummaryLine(const nlohmann::json& migration);
// The in-place line of one migration in `watch` on a terminal:
// "m1 [#########.....]  62.0%  dirty  12.3 MB/s  ETA 1m20s".
std::string BarLine(const nlohmann::json& migration, int bar_width);
// A migration's "id" and its progress' "phase"; "" when absent.
std::string IdOf(const nlohmann::json& migration);
std::string PhaseOf(const nlohmann::json& migration);
// "precopy", or for a hybrid copy "hybrid: 40% pre-copy, 120 blocks remote, 1.50 MB
// fetched on demand (p50/p99 1.2/8.5 ms), 3.00 MB pulled" (a progress object).
std::string ModeText(const nlohmann::json& progress);
// Key: value lines of a progress answer (query_progress or status's "progress").
std::string ProgressBlock(const nlohmann::json& progress);
// The `list` table with a header, or "no migrations". A hybrid migration's row is
// followed by an indented line with its ModeText.
std::string MigrationTable(const nlohmann::json& migrations);
// The `incoming` table (its "incoming" array) with a header, or "no incoming copies".
std::string IncomingTable(const nlohmann::json& incoming);
// A `profile` answer's "profile" object ({"images":[...]}), one paragraph per image:
// "vm1.img: 12 of 2048 blocks written (1500 data blocks of 512 KiB), 45.5 writes/s over
// 2.0 s, 4.10 KB per write" and its hottest blocks, at most `hottest` of them:
// "  hottest: block 3 (20 writes, 10.0/s), block 7 (5 writes, 2.5/s)".
std::string ProfileText(const nlohmann::json& profile, size_t hottest = 5);
// A `predict` answer as `migratefs-scheduler predict` prints it (broker/policy/
// predict_format.h PredictionText): header, one row per S, pre-copy, recommendation.
std::string PredictText(const nlohmann::json& answer);
// One event line: "2026-11-22 01:02:03 m1 phase -> dirty: detail".
std::string EventText(const nlohmann::json& event);

}  // namespace migratefs::ctl
