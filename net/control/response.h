// Typed results -> the JSON the control socket answers with (net/control/README.md).
//
// Every answer object has "ok"; failed ones carry "error":{"code","message"}; when the
// request had a "req" tag it is echoed as "req". Event lines (the `events` stream) have
// no "ok": {"event":TYPE,"id","phase","detail","time"}.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "migratefs/migration_service.h"
#include "migratefs/status.h"

namespace migratefs::control {

using Tag = std::optional<nlohmann::json>;

// {"ok":true, <fields>..., "req":tag}. `fields` must be an object (or null for none).
nlohmann::json OkAnswer(nlohmann::json fields, const Tag& tag);
// {"ok":false,"error":{"code","message"}, "req":tag}
nlohmann::json ErrorAnswer(const Error& error, const Tag& tag);

// Field sets of the individual answers, to pass to OkAnswer.
// Every Progress member, flat; the hybrid-copy members (precopy_pct, data_blocks,
// blocks_remote, bytes_pulled, bytes_fetched_on_demand, fetch_latency_ms{p50,p99}) only
// when mode is "hybrid".
nlohmann::json ProgressFields(const Progress& progress);
// id, images, target, completed, progress{}.
nlohmann::json MigrationFields(const MigrationInfo& info);
// identical, blocks_compared, mismatches[{image, offset, length}].
nlohmann::json VerifyFields(const VerifyReport& report);
// migrations[].
nlohmann::json ListFields(const std::vector<MigrationInfo>& migrations);
// incoming[{image, state, reason (only when set), blocks_total, blocks_remote,
// bytes_pulled, bytes_fetched_on_demand, fetches, fetch_latency_ms{p50,p99}}].
nlohmann::json IncomingFields(const std::vector<IncomingInfo>& incoming);

// profile: {"profile":{"images":[...]}}, the profile file format that
// `migratefs-scheduler predict --profile` reads (broker/policy/predict_format.h).
nlohmann::json ProfileFields(const std::vector<policy::ImageProfile>& profiles);
// predict: the fields of `migratefs-scheduler predict --json` (rows, precopy,
// recommended_s, deadline_met, reason, data_bytes, writes_per_s) and what was asked:
// images, net_kbps, deadline_s, rtt_ms, step.
nlohmann::json PredictFields(const PredictRequest& request, const policy::Prediction& prediction);

nlohmann::json EventLine(const Event& event);

// One answer or event as a wire line, '\n' included. Never throws: text that is not
// valid UTF-8 (say, an image name in a service message) is replaced, not rejected.
std::string ToLine(const nlohmann::json& answer);

}  // namespace migratefs::control
