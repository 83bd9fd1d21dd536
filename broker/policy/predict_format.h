// JSON and text renderings of seed 002's profile and prediction (hybrid_predictor.h),
// shared by `migratefs-scheduler predict`, the daemon's control socket (`profile` and
// `predict` ops, net/control/README.md) and `migratectl`. Pure: no I/O. A library of its
// own (migratefs_predict_format) so that migratefs_policy itself needs no JSON.
//
// A profile renders in the profile file format that `migratefs-scheduler predict
// --profile FILE` reads (broker/policy/README.md "Profile file"; parsed by
// broker/scheduler/predict.h ParseProfiles), so a daemon's answer can be saved and fed
// to the scheduler unchanged.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "broker/policy/hybrid_predictor.h"
#include "migratefs/status.h"

namespace migratefs::policy {

// {"name","image_bytes","block_bytes","window_s","writes":[[block,count],...],
//  "reads" (only when there are some), "data":[[first_block,blocks],...] (only with
//  data_known), "write_bytes"}.
nlohmann::json ProfileJson(const ImageProfile& profile);
// {"images":[ProfileJson, ...]}.
nlohmann::json ProfilesJson(const std::vector<ImageProfile>& profiles);

// The rows `migratefs-scheduler predict` computes for a step of S: 0, step, 2 step, ...
// below 100, then 100. `step` in (0, 100].
std::vector<double> SPercentSteps(double step);

// The table printed by `predict` (S, T, U, fetches, stall, converges, ...) and the
// recommendation line. Of `input` only the image count, net_bps, rtt_s and deadline_s
// are shown.
std::string PredictionText(const PredictInput& input, const Prediction& prediction);
// {"rows":[{"s","t_s","u_s","fetches","stall_s","fetch_stall_s","mirror_stall_s",
//  "mirrored_writes","bulk_s","iterate_s","final_s","precopy_bytes","remote_bytes",
//  "p_converge","converges","meets_deadline","cost"}], "precopy":{...},
//  "recommended_s", "deadline_met", "reason", "data_bytes", "writes_per_s"}
nlohmann::json PredictionJson(const Prediction& prediction);
// The inverse of PredictionJson (missing numbers read as 0), for clients that show a
// daemon's answer. invalid_argument when `doc` has no "rows" array or "precopy" object.
Result<Prediction> PredictionFromJson(const nlohmann::json& doc);

}  // namespace migratefs::policy
