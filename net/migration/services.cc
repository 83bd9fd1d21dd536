// Placeholder until the migration engine lands: the daemon runs as a plain mirror.
#include "migratefs/services.h"

namespace migratefs {
namespace {
class NoServices : public Services {
 public:
  void Stop() override {}
};
}  // namespace

Result<std::unique_ptr<Services>> StartServices(const MountOptions&, int, HookRegistry&, RestartJournal*) {
  return std::unique_ptr<Services>(new NoServices());
}
}  // namespace migratefs
