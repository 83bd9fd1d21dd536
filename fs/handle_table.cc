#include "fs/handle_table.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "fs/direct_io.h"

namespace migratefs::fs {

HandleTable::~HandleTable() {
  std::lock_guard<std::mutex> l(mu_);
  for (uint32_t s = 0; s < state_->handles().high(); s++) {
    delete files_.Get(s);
    delete dirs_.Get(s);
  }
}

int64_t HandleTable::Record(HandleKind kind, int fd, const Inode* in, int flags, bool cached_writer) {
  std::lock_guard<std::mutex> l(mu_);
  const uint32_t slot = state_->handles().Alloc();
  if (slot == UINT32_MAX) return -EMFILE;
  HandleRecord& r = state_->handles().at(slot);
  r.fd = fd;
  r.node = in == nullptr ? 0 : InodeTable::IdOf(*in);
  r.flags = flags;
  r.cached_writer = cached_writer ? 1 : 0;
  return slot;
}

int64_t HandleTable::Add(File* f) {
  int64_t slot = Record(HandleKind::kFile, f->fd, &f->inode, f->flags, f->cached_writer);
  if (slot < 0) return slot;
  files_.Set(static_cast<uint32_t>(slot), f);
  state_->handles().at(static_cast<uint32_t>(slot)).kind.store(static_cast<uint32_t>(HandleKind::kFile));
  return slot;
}

int64_t HandleTable::Add(Dir* d) {
  int64_t slot = Record(HandleKind::kDir, dirfd(d->dp), nullptr, 0, false);
  if (slot < 0) return slot;
  dirs_.Set(static_cast<uint32_t>(slot), d);
  state_->handles().at(static_cast<uint32_t>(slot)).kind.store(static_cast<uint32_t>(HandleKind::kDir));
  return slot;
}

void HandleTable::Remove(uint64_t fh) {
  const uint32_t slot = static_cast<uint32_t>(fh);
  File* f = files_.Get(slot);
  Dir* d = dirs_.Get(slot);
  state_->handles().at(slot).kind.store(static_cast<uint32_t>(HandleKind::kFree));
  files_.Set(slot, nullptr);
  dirs_.Set(slot, nullptr);
  delete f;
  delete d;
  std::lock_guard<std::mutex> l(mu_);
  state_->handles().Release(slot);
}

void HandleTable::Restore(InodeTable& inodes) {
  SlotArray<HandleRecord>& recs = state_->handles();
  for (uint32_t s = 0; s < recs.high(); s++) {
    HandleRecord& r = recs.at(s);
    const auto kind = static_cast<HandleKind>(r.kind.load());
    if (kind == HandleKind::kDir) {
      DIR* dp = fdopendir(r.fd);
      if (dp == nullptr) {  // cannot happen for an fd that was a directory's
        r.kind.store(0);
        continue;
      }
      auto* d = new Dir(dp);
      d->offset = -1;
      dirs_.Set(s, d);
    } else if (kind == HandleKind::kFile) {
      Inode* in = inodes.Find(r.node);
      if (in == nullptr) {  // its inode was forgotten: the kernel cannot use this fh
        r.kind.store(0);
        continue;
      }
      auto* f = new File(*in, r.fd, r.flags);
      if (f->direct()) f->dio_align = DirectIoAlignment(r.fd);
      if (r.cached_writer != 0) {
        f->cached_writer = true;
        in->cached_writers.fetch_add(1, std::memory_order_relaxed);
      }
      files_.Set(s, f);
    }
  }
  recs.RebuildFreeList([](const HandleRecord& r) { return r.kind.load() != 0; });
}

}  // namespace migratefs::fs
