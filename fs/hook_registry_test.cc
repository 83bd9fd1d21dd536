#include "fs/hook_registry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace migratefs::fs {
namespace {

using namespace std::chrono_literals;

class NullHook : public ImageHook {
 public:
  int CheckWriteOpen() override { return 0; }
  int BeforeModify() override { return 0; }
  int CheckNamespaceChange() override { return 0; }
  void AfterWrite(uint64_t, const void*, size_t, Completion done) override { done.Complete(0); }
  void AfterResize(uint64_t) override {}
  void AfterZero(uint64_t, uint64_t) override {}
  void AfterSync(bool, Completion done) override { done.Complete(0); }
};

// One cell, as the inode table would hold it.
class OneCell : public HookCellIndex {
 public:
  void Locked(dev_t dev, ino_t ino, const std::function<void(HookCell*)>& fn) override {
    fn(dev == 1 && ino == 2 ? &cell : nullptr);
  }
  HookCell cell{nullptr};
};

TEST(HookRegistry, AttachFindDetach) {
  HookRegistryImpl r;
  OneCell idx;
  r.SetIndex(&idx);
  auto h = std::make_shared<NullHook>();
  EXPECT_TRUE(r.Empty());
  r.Attach(1, 2, h);
  EXPECT_EQ(r.Find(1, 2), h);
  EXPECT_EQ(idx.cell.load(), h.get());
  EXPECT_EQ(r.InitialHook(1, 2), h.get());
  EXPECT_FALSE(r.Empty());
  r.Attach(5, 6, h);  // not in the index: remembered for later
  EXPECT_EQ(r.InitialHook(5, 6), h.get());
  EXPECT_TRUE(r.Detach(1, 2, h.get()));
  EXPECT_EQ(r.Find(1, 2), nullptr);
  EXPECT_EQ(idx.cell.load(), nullptr);
  EXPECT_FALSE(r.Detach(1, 2, h.get()));  // nothing attached any more
  EXPECT_TRUE(r.Detach(5, 6, h.get()));
  EXPECT_TRUE(r.Empty());
}

// Detach removes only the hook its caller attached: whoever holds a stale or a
// never-attached hook object cannot take the inode's current hook away.
TEST(HookRegistry, DetachLeavesSomeoneElsesHook) {
  HookRegistryImpl r;
  OneCell idx;
  r.SetIndex(&idx);
  auto running = std::make_shared<NullHook>();
  auto refused = std::make_shared<NullHook>();
  r.Attach(1, 2, running);
  EXPECT_FALSE(r.Detach(1, 2, refused.get()));
  EXPECT_FALSE(r.Detach(1, 2, nullptr));
  EXPECT_EQ(r.Find(1, 2), running);
  EXPECT_EQ(idx.cell.load(), running.get());
  // Replaced by a newer hook: the old owner's Detach leaves the new one alone.
  auto fence = std::make_shared<NullHook>();
  r.Attach(1, 2, fence);
  EXPECT_FALSE(r.Detach(1, 2, running.get()));
  EXPECT_EQ(r.Find(1, 2), fence);
  EXPECT_TRUE(r.Detach(1, 2, fence.get()));
  EXPECT_TRUE(r.Empty());
}

// A modification that began (and saw no hook) before Attach must finish before
// Attach returns; one that begins after sees the hook.
TEST(HookRegistry, AttachWaitsForModificationInFlight) {
  HookRegistryImpl r;
  OneCell idx;
  r.SetIndex(&idx);
  std::atomic<bool> inside{false}, release{false}, finished{false};
  std::thread writer([&] {
    ModifyScope scope(idx.cell);
    EXPECT_EQ(scope.hook(), nullptr);
    inside = true;
    while (!release) std::this_thread::sleep_for(1ms);
    finished = true;
  });
  while (!inside) std::this_thread::sleep_for(1ms);
  std::atomic<bool> attached{false};
  std::thread attacher([&] {
    r.Attach(1, 2, std::make_shared<NullHook>());
    attached = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(attached.load()) << "Attach returned while a modification was in flight";
  release = true;
  attacher.join();
  EXPECT_TRUE(finished.load());
  writer.join();
  ModifyScope after(idx.cell);
  EXPECT_NE(after.hook(), nullptr);
}

// Detach waits for a call into the hook, and other cells do not make it wait.
TEST(HookRegistry, DetachWaitsForHookCall) {
  HookRegistryImpl r;
  OneCell idx;
  r.SetIndex(&idx);
  r.Attach(1, 2, std::make_shared<NullHook>());
  HookCell other{nullptr};
  std::atomic<bool> inside{false}, release{false};
  std::thread busy_elsewhere([&] {
    ModifyScope scope(other);
    while (!release) std::this_thread::sleep_for(1ms);
  });
  std::thread writer([&] {
    ModifyScope scope(idx.cell);
    ASSERT_NE(scope.hook(), nullptr);
    inside = true;
    while (!release) std::this_thread::sleep_for(1ms);
  });
  while (!inside) std::this_thread::sleep_for(1ms);
  std::atomic<bool> detached{false};
  std::thread detacher([&] {
    r.Detach(1, 2, r.Find(1, 2).get());
    detached = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(detached.load());
  release = true;
  detacher.join();
  writer.join();
  busy_elsewhere.join();
}

// Many writers hammering one cell while hooks come and go: every modification
// that finishes after Attach returned must have seen a hook.
TEST(HookRegistry, NoModificationMissedUnderChurn) {
  HookRegistryImpl r;
  OneCell idx;
  r.SetIndex(&idx);
  std::atomic<bool> stop{false};
  std::atomic<int> attached_epoch{0};
  std::atomic<int> violations{0};
  std::vector<std::thread> writers;
  for (int i = 0; i < 4; i++) {
    writers.emplace_back([&] {
      while (!stop) {
        int epoch_before = attached_epoch.load();
        ModifyScope scope(idx.cell);
        bool saw = scope.hook() != nullptr;
        scope.Exit();
        // Attach had returned before we started (odd epoch) and Detach had not begun
        // by the time we finished, yet we saw no hook.
        if (!saw && (epoch_before & 1) && attached_epoch.load() == epoch_before) violations++;
      }
    });
  }
  for (int i = 0; i < 200; i++) {
    auto hook = std::make_shared<NullHook>();
    r.Attach(1, 2, hook);
    attached_epoch++;  // odd: attached
    std::this_thread::sleep_for(100us);
    attached_epoch++;  // even: about to detach
    r.Detach(1, 2, hook.get());
  }
  stop = true;
  for (auto& t : writers) t.join();
  EXPECT_EQ(violations.load(), 0);
}

}  // namespace
}  // namespace migratefs::fs
