#include "broker/scheduler/predict.h"

#include <cmath>
#include <cstdio>

#include "broker/scheduler/document.h"

namespace migratefs::scheduler {

using nlohmann::json;
namespace pol = migratefs::policy;

namespace {

Error Bad(const std::string& message) { return MakeError(errc::kInvalidArgument, message); }

// A whole number >= 0 that fits in 64 bits (JSON integers, or floats with no fraction).
bool WholeNumber(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    if (v.get<int64_t>() < 0) return false;
    *out = uint64_t(v.get<int64_t>());
    return true;
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || d < 0 || d != std::floor(d) || d > 1.8e19) return false;
    *out = uint64_t(d);
    return true;
  }
  return false;
}

// "writes"/"reads": [[block, count], ...] or a dense [count, ...].
std::string ParseCounts(const json& v, const std::string& where, std::vector<pol::BlockCount>* out) {
  if (!v.is_array()) return where + " must be an array of [block, count] pairs or of counts";
  for (size_t k = 0; k < v.size(); ++k) {
    const json& item = v[k];
    const std::string at = where + "[" + std::to_string(k) + "]";
    pol::BlockCount c;
    if (item.is_number()) {
      c.block = k;
      c.count = item.get<double>();
    } else if (item.is_array() && item.size() == 2 && item[1].is_number()) {
      if (!WholeNumber(item[0], &c.block)) return at + ": the block must be a whole number >= 0";
      c.count = item[1].get<double>();
    } else {
      return at + " must be [block, count] or a count";
    }
    if (!std::isfinite(c.count) || c.count < 0) return at + ": the count must be a number >= 0";
    if (c.count > 0 || !item.is_number()) out->push_back(c);
  }
  return "";
}

std::string ParseOne(const json& doc, const std::string& where, pol::ImageProfile* im) {
  if (!doc.is_object()) return where + " must be an object";
  JsonFields f(doc, where + ": ");
  f.Known({"name", "image_bytes", "block_bytes", "window_s", "writes", "reads", "data", "write_bytes"});
  if (!f.ok()) return f.error();
  if (doc.contains("name")) im->name = f.String("name");
  if (!doc.contains("image_bytes")) return where + ".image_bytes is missing (the image size in bytes)";
  if (!WholeNumber(doc["image_bytes"], &im->image_bytes)) return where + ".image_bytes must be a whole number >= 0";
  if (doc.contains("block_bytes") && !WholeNumber(doc["block_bytes"], &im->block_bytes))
    return where + ".block_bytes must be a whole number > 0";
  im->window_s = f.Number("window_s", 0, true);
  im->write_bytes = f.Number("write_bytes", im->write_bytes);
  if (!f.ok()) return f.error();
  if (!doc.contains("writes")) return where + ".writes is missing (an array, may be empty)";
  if (auto e = ParseCounts(doc["writes"], where + ".writes", &im->writes); !e.empty()) return e;
  if (doc.contains("reads"))
    if (auto e = ParseCounts(doc["reads"], where + ".reads", &im->reads); !e.empty()) return e;
  if (doc.contains("data")) {
    const json& d = doc["data"];
    if (!d.is_array()) return where + ".data must be an array of [first_block, blocks] pairs";
    im->data_known = true;
    for (size_t k = 0; k < d.size(); ++k) {
      pol::BlockRange r;
      if (!d[k].is_array() || d[k].size() != 2 || !WholeNumber(d[k][0], &r.first) || !WholeNumber(d[k][1], &r.count))
        return where + ".data[" + std::to_string(k) + "] must be [first_block, blocks] (whole numbers)";
      im->data.push_back(r);
    }
  }
  return "";
}

}  // namespace

Result<std::vector<pol::ImageProfile>> ParseProfiles(const json& doc, const std::string& origin) {
  std::vector<pol::ImageProfile> out;
  if (doc.is_object() && doc.contains("images")) {
    if (doc.size() != 1) return Bad(origin + ": a document with \"images\" holds nothing else");
    const json& list = doc["images"];
    if (!list.is_array() || list.empty()) return Bad(origin + ": images must be a non-empty array of profiles");
    for (size_t j = 0; j < list.size(); ++j) {
      pol::ImageProfile im;
      if (auto e = ParseOne(list[j], "images[" + std::to_string(j) + "]", &im); !e.empty())
        return Bad(origin + ": " + e);
      out.push_back(std::move(im));
    }
    return out;
  }
  pol::ImageProfile im;
  if (auto e = ParseOne(doc, "profile", &im); !e.empty()) return Bad(origin + ": " + e);
  out.push_back(std::move(im));
  return out;
}

Result<std::vector<pol::ImageProfile>> LoadProfiles(const std::string& path) {
  auto doc = LoadDocument(path);
  if (!doc) return doc.error();
  return ParseProfiles(doc.value(), path);
}

}  // namespace migratefs::scheduler
