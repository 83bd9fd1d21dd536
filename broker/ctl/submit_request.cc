#include "broker/ctl/submit_request.h"

#include <cmath>

namespace migratefs::ctl {

Result<nlohmann::json> BuildSubmitRequest(const SubmitArgs& a, double now_s) {
  auto bad = [](const std::string& m) { return MakeError(errc::kInvalidArgument, m); };
  if (a.priority != "high" && a.priority != "medium" && a.priority != "low") {
    return bad("--priority: must be high, medium or low, got \"" + a.priority + "\"");
  }
  if (!std::isfinite(a.deadline_in_s) || a.deadline_in_s <= 0) {
    return bad("--deadline: must be a number of seconds > 0");
  }
  if (a.vm.empty()) return bad("VM: must not be empty");
  if (a.images.empty()) return bad("--image: at least one image");
  if (a.source.empty()) return bad("--source: the broker's host name is required");
  if (a.target.empty()) return bad("--target-host: required");
  if (a.target_address.find(':') == std::string::npos) return bad("--target: must be HOST:PORT");
  nlohmann::json task = {{"vm", a.vm},
                         {"images", a.images},
                         {"source", a.source},
                         {"target", a.target},
                         {"target_address", a.target_address},
                         {"deadline", now_s + a.deadline_in_s},
                         {"priority", a.priority},
                         {"important", a.important}};
  if (!a.path.empty()) task["path"] = a.path;
  return nlohmann::json{{"op", "submit"}, {"task", task}};
}

}  // namespace migratefs::ctl
