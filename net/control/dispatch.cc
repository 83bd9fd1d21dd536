#include "net/control/dispatch.h"

#include <exception>
#include <string>
#include <type_traits>

namespace migratefs::control {

using nlohmann::json;

namespace {

json FromStatus(const Status& status, const Tag& tag) {
  return status ? OkAnswer(nullptr, tag) : ErrorAnswer(status.error(), tag);
}

template <typename T, typename ToFields>
json FromResult(const Result<T>& result, const Tag& tag, ToFields to_fields) {
  return result ? OkAnswer(to_fields(result.value()), tag) : ErrorAnswer(result.error(), tag);
}

json DaemonStatusFields(MigrationService& service) {
  json fields = ListFields(service.List());
#ifdef MIGRATEFS_VERSION
  fields["version"] = MIGRATEFS_VERSION;
#endif
  return fields;
}

// One overload per command; the variant visit in Execute picks it.
struct Executor {
  MigrationService& service;
  const Tag& tag;

  json operator()(const StartCommand& c) {
    return FromResult(service.Start(c.request), tag,
                      [](const std::string& id) { return json{{"id", id}}; });
  }
  json operator()(const SetLimitCommand& c) {
    return FromStatus(c.kind == RateKind::kNetwork ? service.SetNetworkLimit(c.id, c.kbps)
                                                   : service.SetDiskLimit(c.id, c.kbps),
                      tag);
  }
  json operator()(const SetMirrorModeCommand& c) { return FromStatus(service.SetMirrorMode(c.id, c.mode), tag); }
  json operator()(const QueryProgressCommand& c) {
    return FromResult(service.QueryProgress(c.id, c.what), tag, ProgressFields);
  }
  json operator()(const QueryCompletionCommand& c) {
    Result<bool> completed = service.QueryCompletion(c.id);
    if (!completed) return ErrorAnswer(completed.error(), tag);
    json fields = {{"completed", completed.value()}};
    // In hybrid mode "completed" means precopy_pct reached, not every block there: say
    // so. The mode never changes, so asking for it separately races with nothing; if
    // the migration went away in between, the answer stays the plain one.
    Result<Progress> progress = service.QueryProgress(c.id, RateKind::kNetwork);
    if (progress && progress.value().mode == "hybrid") fields["hybrid"] = true;
    return OkAnswer(std::move(fields), tag);
  }
  json operator()(const FinishCommand& c) { return FromStatus(service.Finish(c.id), tag); }
  json operator()(const CancelCommand& c) {
    return FromStatus(service.Cancel(c.id, c.keep_partial), tag);
  }
  json operator()(const VerifyCommand& c) {
    return FromResult(service.Verify(c.id), tag, VerifyFields);
  }
  json operator()(const ReleaseCommand& c) { return FromStatus(service.Release(c.id), tag); }
  json operator()(const ListCommand&) { return OkAnswer(ListFields(service.List()), tag); }
  json operator()(const StatusCommand& c) {
    if (!c.id) return OkAnswer(DaemonStatusFields(service), tag);
    return FromResult(service.GetStatus(*c.id), tag, MigrationFields);
  }
  json operator()(const IncomingCommand&) { return OkAnswer(IncomingFields(service.Incoming()), tag); }
  json operator()(const ProfileCommand& c) { return FromResult(service.Profile(c.request), tag, ProfileFields); }
  json operator()(const PredictCommand& c) {
    return FromResult(service.Predict(c.request), tag,
                      [&](const policy::Prediction& p) { return PredictFields(c.request, p); });
  }
  json operator()(const EventsCommand&) {
    return ErrorAnswer(MakeError(errc::kInternal, "events is handled by the server"), tag);
  }
};

}  // namespace

bool IsSlow(const Command& command) {
  // Everything that opens files or may talk to the peer: start (opens the images,
  // stamps their identity), cancel (tells the target, maybe over a new connection),
  // release (clears marks on disk), finish and verify; and predict (a large profile
  // takes the model a second).
  return std::holds_alternative<FinishCommand>(command) || std::holds_alternative<VerifyCommand>(command) ||
         std::holds_alternative<StartCommand>(command) || std::holds_alternative<CancelCommand>(command) ||
         std::holds_alternative<ReleaseCommand>(command) || std::holds_alternative<PredictCommand>(command);
}

bool IsLong(const Command& command) { return std::holds_alternative<ProfileCommand>(command); }

json Execute(const Command& command, MigrationService& service, const Tag& tag) {
  try {
    return std::visit(Executor{service, tag}, command);
  } catch (const std::exception& e) {
    return ErrorAnswer(MakeError(errc::kInternal, std::string("service failed: ") + e.what()),
                       tag);
  }
}

}  // namespace migratefs::control
