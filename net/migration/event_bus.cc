#include "net/migration/event_bus.h"

namespace migratefs::migration {

class EventBus::Handle : public MigrationService::Subscription {
 public:
  Handle(std::weak_ptr<EventBus*> bus, uint64_t key) : bus_(std::move(bus)), key_(key) {}
  ~Handle() override {
    // The bus may be gone first (daemon shutdown with a subscriber still connected).
    if (auto bus = bus_.lock()) (*bus)->Unsubscribe(key_);
  }

 private:
  std::weak_ptr<EventBus*> bus_;
  uint64_t key_;
};

std::unique_ptr<MigrationService::Subscription> EventBus::Subscribe(MigrationService::EventSink sink) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t key = next_key_++;
  sinks_[key] = std::move(sink);
  return std::make_unique<Handle>(self_, key);
}

void EventBus::Unsubscribe(uint64_t key) {
  std::lock_guard<std::mutex> lock(mu_);
  sinks_.erase(key);
}

void EventBus::Publish(const Event& event) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [key, sink] : sinks_) sink(event);
}

}  // namespace migratefs::migration
