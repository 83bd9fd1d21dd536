// `migratectl submit`: one migration task handed straight to a broker's local UNIX
// socket (the broker's `socket =`, plain requests), with its priority class. The same
// TaskSpec fields the scheduler sends (broker/daemon/README.md "Socket ops").
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "migratefs/status.h"

namespace migratefs::ctl {

struct SubmitArgs {
  std::string vm;
  std::vector<std::string> images;
  std::string source;          // this broker's host name
  std::string target;          // target host name
  std::string target_address;  // target migratefs HOST:PORT
  double deadline_in_s = 0;    // seconds from now, > 0
  std::string priority = "medium";  // "high" | "medium" | "low"
  bool important = false;           // maps onto high
  std::vector<std::string> path;    // sections, optional
};

// {"op":"submit","task":{...}} with an absolute deadline (now_s + deadline_in_s).
// invalid_argument naming the option (--priority, --deadline, ...) on bad input.
Result<nlohmann::json> BuildSubmitRequest(const SubmitArgs& args, double now_s);

}  // namespace migratefs::ctl
