#include <nlohmann/json.hpp>

#include "broker/daemon/control_client.h"
#include "migratefs/control_protocol.h"

namespace migratefs::broker {

namespace {

using nlohmann::json;

class SocketControlClient : public ControlClient {
 public:
  SocketControlClient(std::string path, Millis timeout, Millis finish_timeout)
      : path_(std::move(path)), timeout_(timeout), finish_timeout_(finish_timeout) {}

  Result<std::string> Start(const std::vector<std::string>& images, const std::string& target,
                            const Marking& marking, uint64_t network_kbps) override {
    json request = {{"op", op::kStart}, {"images", images}, {"target", target}};
    AddMarking(marking, &request);
    if (network_kbps > 0) request["network_kbps"] = network_kbps;
    auto answer = Call(request, timeout_);
    if (!answer) return answer.error();
    const json& id = answer.value()["id"];
    if (!id.is_string()) return Malformed("start without a string \"id\"");
    return id.get<std::string>();
  }

  Status SetNetworkLimit(const std::string& id, uint64_t kbps) override {
    return Plain({{"op", op::kSetNetworkLimit}, {"id", id}, {"kbps", kbps}}, timeout_);
  }

  Status SetDiskLimit(const std::string& id, uint64_t kbps) override {
    return Plain({{"op", op::kSetDiskLimit}, {"id", id}, {"kbps", kbps}}, timeout_);
  }

  Result<Progress> QueryProgress(const std::string& id, RateKind what) override {
    auto answer = Call({{"op", op::kQueryProgress},
                        {"id", id},
                        {"what", what == RateKind::kNetwork ? "network" : "disk"}},
                       timeout_);
    if (!answer) return answer.error();
    const json& a = answer.value();
    if (!a.contains("phase") || !a.contains("kbps") || !a.contains("bytes_left")) {
      return Malformed("query_progress without phase, kbps or bytes_left");
    }
    try {
      Progress p;
      p.phase = a.at("phase").get<std::string>();
      p.pause_reason = a.value("pause_reason", "");
      p.kbps = a.at("kbps").get<double>();
      p.bytes_total = a.value("bytes_total", uint64_t{0});
      p.bytes_sent = a.value("bytes_sent", uint64_t{0});
      p.bytes_left = a.at("bytes_left").get<uint64_t>();
      p.blocks_left = a.value("blocks_left", uint64_t{0});
      p.dirty_blocks = a.value("dirty_blocks", uint64_t{0});
      p.dirty_kbps = a.value("dirty_kbps", 0.0);
      p.network_kbps = a.value("network_kbps", 0.0);
      p.disk_kbps = a.value("disk_kbps", 0.0);
      p.eta_s = a.value("eta_s", -1.0);
      p.network_limit_kbps = a.value("network_limit_kbps", uint64_t{0});
      p.disk_limit_kbps = a.value("disk_limit_kbps", uint64_t{0});
      return p;
    } catch (const json::exception& e) {
      return Malformed(std::string("query_progress: ") + e.what());
    }
  }

  Result<bool> QueryCompletion(const std::string& id) override {
    auto answer = Call({{"op", op::kQueryCompletion}, {"id", id}}, timeout_);
    if (!answer) return answer.error();
    const json& completed = answer.value()["completed"];
    if (!completed.is_boolean()) return Malformed("query_completion without \"completed\"");
    return completed.get<bool>();
  }

  Status Finish(const std::string& id) override {
    return Plain({{"op", op::kFinish}, {"id", id}}, finish_timeout_);
  }

  Status Cancel(const std::string& id) override {
    return Plain({{"op", op::kCancel}, {"id", id}}, timeout_);
  }

 private:
  static Error Malformed(const std::string& what) {
    return MakeError(errc::kInternal, "migratefs answered oddly: " + what);
  }

  // Sends one request; returns the answer object when "ok" is true, its error otherwise.
  Result<json> Call(const json& request, Millis timeout) {
    auto line = RoundTrip(path_, request.dump(), timeout);
    if (!line) return line.error();
    json answer = json::parse(line.value(), nullptr, /*allow_exceptions=*/false);
    if (!answer.is_object() || !answer["ok"].is_boolean()) {
      return Malformed("not a JSON object with \"ok\": " + line.value().substr(0, 200));
    }
    if (answer["ok"].get<bool>()) return answer;
    const json& error = answer["error"];
    if (!error.is_object()) return Malformed("error answer without \"error\" object");
    return Error{error.value("code", std::string(errc::kInternal)),
                 error.value("message", std::string("(no message)"))};
  }

  Status Plain(const json& request, Millis timeout) {
    auto answer = Call(request, timeout);
    if (!answer) return answer.error();
    return OkStatus();
  }

  std::string path_;
  Millis timeout_;
  Millis finish_timeout_;
};

}  // namespace

std::unique_ptr<ControlClient> NewSocketControlClient(std::string socket_path, Millis timeout,
                                                      Millis finish_timeout) {
  return std::make_unique<SocketControlClient>(std::move(socket_path), timeout, finish_timeout);
}

}  // namespace migratefs::broker
