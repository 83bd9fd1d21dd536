#include "net/peer/range_order.h"

#include <algorithm>

namespace migratefs::net {

void RangeOrder::Depend(OrderEntry* later, OrderEntry* earlier) {
  earlier->dependents_.push_back(later);
  ++later->blockers;
}

bool RangeOrder::AddRange(OrderEntry* e, uint64_t start, uint64_t end) {
  e->start_ = start;
  e->end_ = end;
  e->barrier_ = false;
  e->blockers = 0;
  const uint64_t from = start > small_max_len_ ? start - small_max_len_ : 0;
  for (auto it = small_.lower_bound(from); it != small_.end() && it->first < end; ++it) {
    if (it->second->end_ > start) Depend(e, it->second);
  }
  for (OrderEntry* b : big_) {
    if (b->start_ < end && b->end_ > start) Depend(e, b);
  }
  const uint64_t len = end - start;
  if (len <= kSmallRange) {
    e->in_small_ = true;
    e->small_it_ = small_.emplace(start, e);
    small_max_len_ = std::max(small_max_len_, len);
  } else {
    e->in_small_ = false;
    e->big_it_ = big_.insert(big_.end(), e);
  }
  e->all_it_ = all_.insert(all_.end(), e);
  return e->blockers == 0;
}

bool RangeOrder::AddBarrier(OrderEntry* e) {
  e->barrier_ = true;
  e->blockers = 0;
  for (OrderEntry* o : all_) Depend(e, o);
  e->all_it_ = all_.insert(all_.end(), e);
  return e->blockers == 0;
}

void RangeOrder::Complete(OrderEntry* e, std::vector<OrderEntry*>* ready) {
  if (!e->barrier_) {
    if (e->in_small_) {
      small_.erase(e->small_it_);
      if (small_.empty()) small_max_len_ = 0;
    } else {
      big_.erase(e->big_it_);
    }
  }
  all_.erase(e->all_it_);
  // Dependents were added in arrival order, so they come out in arrival order.
  for (OrderEntry* d : e->dependents_) {
    if (--d->blockers == 0) ready->push_back(d);
  }
  e->dependents_.clear();
}

}  // namespace migratefs::net
