#include "broker/daemon/task_spec.h"

#include <cmath>

#include "broker/daemon/line_socket.h"

namespace migratefs::broker {

namespace {

using nlohmann::json;

Error Field(const std::string& name, const std::string& what) {
  return MakeError(errc::kBadRequest, "field \"task." + name + "\" " + what);
}

bool IsStringList(const json& j) {
  if (!j.is_array()) return false;
  for (const json& item : j) {
    if (!item.is_string() || item.get_ref<const std::string&>().empty()) return false;
  }
  return true;
}

}  // namespace

Result<TaskSpec> TaskSpecFromJson(const json& j) {
  if (!j.is_object()) return MakeError(errc::kBadRequest, "field \"task\" must be an object");
  TaskSpec spec;
  for (const char* key : {"vm", "source", "target", "target_address"}) {
    if (!j.contains(key) || !j[key].is_string() || j[key].get_ref<const std::string&>().empty()) {
      return Field(key, "must be a non-empty string");
    }
  }
  spec.vm = j["vm"];
  spec.source = j["source"];
  spec.target = j["target"];
  spec.target_address = j["target_address"];
  if (!ParseEndpoint(spec.target_address)) return Field("target_address", "must be HOST:PORT");
  if (!j.contains("images") || !IsStringList(j["images"]) || j["images"].empty()) {
    return Field("images", "must be a non-empty array of image names");
  }
  spec.images = j["images"].get<std::vector<std::string>>();
  if (!j.contains("deadline") || !j["deadline"].is_number() ||
      !std::isfinite(j["deadline"].get<double>())) {
    return Field("deadline", "must be a number (seconds since the epoch)");
  }
  spec.deadline_s = j["deadline"];
  if (j.contains("important")) {
    if (!j["important"].is_boolean()) return Field("important", "must be true or false");
    spec.important = j["important"];
  }
  if (j.contains("priority")) {
    // Before priority classes, "priority" was an integer ordering key: still accepted
    // from older schedulers, as `rank`, with the default class.
    if (j["priority"].is_number_integer()) {
      spec.rank = j["priority"];
    } else if (j["priority"].is_string()) {
      auto c = policy::ParsePriorityClass(j["priority"].get<std::string>(), "task.priority");
      if (!c) return MakeError(errc::kBadRequest, c.error().message);
      spec.priority = c.value();
    } else {
      return Field("priority", "must be \"high\", \"medium\" or \"low\"");
    }
  }
  if (j.contains("rank")) {
    if (!j["rank"].is_number_integer()) return Field("rank", "must be an integer");
    spec.rank = j["rank"];
  }
  if (j.contains("max_kbps")) {
    if (!j["max_kbps"].is_number() || !(j["max_kbps"].get<double>() >= 0) ||
        !std::isfinite(j["max_kbps"].get<double>())) {
      return Field("max_kbps", "must be a number >= 0 (KB/s, 0 = no cap)");
    }
    spec.max_kbps = j["max_kbps"];
  }
  if (j.contains("path")) {
    if (!IsStringList(j["path"])) return Field("path", "must be an array of section names");
    spec.path = j["path"].get<std::vector<std::string>>();
  }
  if (j.contains("sharing")) {
    if (!j["sharing"].is_object()) return Field("sharing", "must map sections to host lists");
    for (const auto& [section, hosts] : j["sharing"].items()) {
      if (!IsStringList(hosts)) return Field("sharing." + section, "must be an array of hosts");
      spec.sharing[section] = hosts.get<std::vector<std::string>>();
    }
  }
  return spec;
}

json ToJson(const TaskSpec& spec) {
  return {{"vm", spec.vm},
          {"images", spec.images},
          {"source", spec.source},
          {"target", spec.target},
          {"target_address", spec.target_address},
          {"deadline", spec.deadline_s},
          {"important", spec.important},
          {"priority", policy::ToString(spec.EffectiveClass())},
          {"rank", spec.rank},
          {"max_kbps", spec.max_kbps},
          {"path", spec.path},
          {"sharing", spec.sharing}};
}

}  // namespace migratefs::broker
