// Arrival-order constraints between the operations of one image on the receiver.
//
// The receiver runs many writes at once, but two operations whose byte ranges overlap
// must take effect in the order they arrived (invariant I3: a later block never loses
// to an older copy). RangeOrder records, for each new entry, the earlier incomplete
// entries it overlaps; an entry may start once all of those completed. Disjoint
// entries never wait for each other.
//
// Two kinds of entries:
// - range [start, end): waits for every earlier incomplete range that overlaps it
//   (a resize is the range [0, UINT64_MAX): ordered against everything).
// - barrier (sync, hash, finish, abort): waits for every earlier incomplete entry of
//   either kind; later ranges do not wait for it (a write issued after a sync may land
//   before the sync completes: the sync promises only what came before it).
//
// Not thread-safe; one RangeOrder per image, used from the session's thread.
// Cost: Add is O(log n + k) for k overlapping entries among those starting within the
// longest pending range before `start`; Complete is O(dependents).
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <vector>

namespace migratefs::net {

struct OrderEntry {
  // Number of earlier entries this one still waits for; 0 = may start.
  int blockers = 0;

 private:
  friend class RangeOrder;
  uint64_t start_ = 0, end_ = 0;
  bool barrier_ = false;
  bool in_small_ = false;
  std::vector<OrderEntry*> dependents_;
  std::multimap<uint64_t, OrderEntry*>::iterator small_it_;
  std::list<OrderEntry*>::iterator big_it_;
  std::list<OrderEntry*>::iterator all_it_;
};

class RangeOrder {
 public:
  // Ranges up to this length go into a start-keyed index; longer ones into a list
  // that every Add scans (zero ranges of whole holes and resizes are rare).
  static constexpr uint64_t kSmallRange = 16u << 20;

  // Adds `e` (not yet added anywhere) as the newest entry. Returns true when it may
  // start at once (e->blockers == 0). start < end required.
  bool AddRange(OrderEntry* e, uint64_t start, uint64_t end);
  bool AddBarrier(OrderEntry* e);

  // Removes a completed entry (it must have started: blockers == 0) and appends to
  // *ready, in arrival order, the entries that may start now.
  void Complete(OrderEntry* e, std::vector<OrderEntry*>* ready);

  size_t size() const { return all_.size(); }
  bool empty() const { return all_.empty(); }

 private:
  static void Depend(OrderEntry* later, OrderEntry* earlier);

  std::multimap<uint64_t, OrderEntry*> small_;  // incomplete short ranges by start
  uint64_t small_max_len_ = 0;                  // upper bound on their lengths
  std::list<OrderEntry*> big_;                  // incomplete long ranges
  std::list<OrderEntry*> all_;                  // every incomplete entry, arrival order
};

}  // namespace migratefs::net
