// Fan-out of migration events to `events` subscribers, in publication order.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

#include "migratefs/migration_service.h"

namespace migratefs::migration {

// Event::time: seconds since the epoch.
inline double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class EventBus {
 public:
  // Sinks are called under the bus lock, one event at a time, so every subscriber sees
  // one global order. Sinks must be quick (the control server queues the line).
  std::unique_ptr<MigrationService::Subscription> Subscribe(MigrationService::EventSink sink);
  void Publish(const Event& event);

 private:
  class Handle;
  void Unsubscribe(uint64_t key);

  std::mutex mu_;
  uint64_t next_key_ = 0;
  std::map<uint64_t, MigrationService::EventSink> sinks_;
  std::shared_ptr<EventBus*> self_ = std::make_shared<EventBus*>(this);
};

}  // namespace migratefs::migration
