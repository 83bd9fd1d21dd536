// `migratefs-scheduler predict`: seed 002's profile-and-predict
// (broker/policy/hybrid_predictor.h) on write profiles read from files.
// broker/policy/README.md "Profile and predict (seed 002)" defines the profile format:
//
//   {"name": "vm1.img",              optional, for messages
//    "image_bytes": 1073741824,      > 0
//    "block_bytes": 524288,          optional, default 512 KiB (the daemon's)
//    "window_s": 60,                 > 0: the counts below were taken over this window
//    "writes": [[block, count], ...] or [count, count, ...] (dense, from block 0)
//    "reads":  same forms, optional
//    "data":   [[first_block, blocks], ...]  optional: blocks holding data (else all)
//    "write_bytes": 4096}            optional: mean bytes per write
//
// or {"images": [profile, ...]} for a VM with several images (start order). A file
// may be TOML too (by extension, as the task and topology files).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "broker/policy/hybrid_predictor.h"
#include "broker/policy/predict_format.h"
#include "migratefs/status.h"

namespace migratefs::scheduler {

// One document: a profile object or {"images": [...]}. Errors name `origin` and the
// field (e.g. "p.json: images[1].writes[3] must be [block, count]").
Result<std::vector<policy::ImageProfile>> ParseProfiles(const nlohmann::json& doc, const std::string& origin);
Result<std::vector<policy::ImageProfile>> LoadProfiles(const std::string& path);

// The table printed by `predict` and its --json form live in
// broker/policy/predict_format.h (shared with the daemon's control socket and migratectl).
using policy::PredictionJson;
using policy::PredictionText;

}  // namespace migratefs::scheduler
