#include "fs/inode.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace migratefs::fs {

Inode::~Inode() { close(fd); }

InodeTable::InodeTable(int root_fd, RestartState* state, HookRegistryImpl* hooks) : state_(state), hooks_(hooks) {
  struct stat st {};
  fstat(root_fd, &st);
  root_ = std::make_unique<Inode>(root_fd, st.st_dev, st.st_ino, st.st_mode, kRootSlot);
  root_->nlookup = 1;
  state_->header().src_fd = root_fd;
  if (hooks_ != nullptr) hooks_->SetIndex(this);
}

InodeTable::InodeTable(RestartState* state, HookRegistryImpl* hooks) : state_(state), hooks_(hooks) {
  const int root_fd = state_->header().src_fd;
  struct stat st {};
  fstat(root_fd, &st);
  root_ = std::make_unique<Inode>(root_fd, st.st_dev, st.st_ino, st.st_mode, kRootSlot);
  root_->nlookup = 1;
  SlotArray<InodeRecord>& recs = state_->inodes();
  for (uint32_t s = 0; s < recs.high(); s++) {
    InodeRecord& r = recs.at(s);
    if (r.live.load() == 0) continue;
    auto in = std::make_unique<Inode>(r.fd, r.dev, r.ino, r.type, s);
    in->nlookup = r.nlookup.load();
    in->parent = r.parent.load();
    in->name.assign(r.name, std::min<size_t>(r.name_len, kRecordNameMax));
    index_.Set(s, in.get());
    map_.emplace(std::make_pair(in->dev, in->ino), std::move(in));
  }
  if (hooks_ != nullptr) hooks_->SetIndex(this);
}

InodeTable::~InodeTable() {
  if (hooks_ != nullptr) hooks_->SetIndex(nullptr);
  // The records stay: a table is destroyed at unmount (nothing to resume) or, in
  // tests, with the state itself.
}

void InodeTable::Persist(const Inode& in) {
  InodeRecord& r = state_->inodes().at(in.slot);
  r.nlookup.store(in.nlookup);
  r.parent.store(in.parent);
  size_t n = std::min(in.name.size(), kRecordNameMax);
  if (r.name_len != n || memcmp(r.name, in.name.data(), n) != 0) {
    memcpy(r.name, in.name.data(), n);
    r.name[n] = '\0';
    r.name_len = static_cast<uint32_t>(n);
  }
}

int InodeTable::Lookup(Inode& parent, const char* name, fuse_entry_param* e) {
  // The kernel resolves ".." itself; refusing it here keeps every name confined to
  // SRC even if a request carries one (I5).
  if (strcmp(name, "..") == 0 || strcmp(name, ".") == 0 || strchr(name, '/') != nullptr) return EINVAL;
  int fd = openat(parent.fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno;
  return Adopt(fd, parent, name, e);
}

int InodeTable::Adopt(int fd, Inode& parent, const char* name, fuse_entry_param* e) {
  memset(e, 0, sizeof(*e));
  if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
    int err = errno;
    close(fd);
    return err;
  }
  e->attr_timeout = timeout_;
  e->entry_timeout = timeout_;
  auto key = std::make_pair(e->attr.st_dev, e->attr.st_ino);
  std::lock_guard<std::mutex> l(mu_);
  auto it = map_.find(key);
  Inode* in;
  if (it != map_.end()) {
    close(fd);
    in = it->second.get();
  } else {
    const uint32_t slot = state_->inodes().Alloc();
    if (slot == UINT32_MAX) {
      close(fd);
      return ENFILE;
    }
    InodeRecord& r = state_->inodes().at(slot);
    r.fd = fd;
    r.type = e->attr.st_mode & S_IFMT;
    r.dev = key.first;
    r.ino = key.second;
    r.nlookup.store(0);
    r.name_len = 0;
    r.live.store(1);
    auto fresh = std::make_unique<Inode>(fd, key.first, key.second, e->attr.st_mode, slot);
    if (hooks_ != nullptr) fresh->hook.store(hooks_->InitialHook(key.first, key.second));
    in = fresh.get();
    index_.Set(slot, in);
    map_.emplace(key, std::move(fresh));
  }
  in->nlookup++;
  in->parent = IdOf(parent);
  if (in->name != name) in->name = name;
  Persist(*in);
  e->ino = IdOf(*in);
  return 0;
}

bool InodeTable::Known(dev_t dev, ino_t ino, fuse_ino_t* id, fuse_ino_t* parent, std::string* name) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = map_.find(std::make_pair(dev, ino));
  if (it == map_.end()) return false;
  *id = IdOf(*it->second);
  *parent = it->second->parent;
  *name = it->second->name;
  return true;
}

int InodeTable::OpenKnown(dev_t dev, ino_t ino, int flags, fuse_ino_t* id) {
  std::lock_guard<std::mutex> l(mu_);  // the O_PATH fd stays open while we reopen it
  auto it = map_.find(std::make_pair(dev, ino));
  if (it == map_.end()) {
    errno = ENOENT;
    return -1;
  }
  *id = IdOf(*it->second);
  return ::open(it->second->ProcPath().c_str(), flags);
}

void InodeTable::Forget(fuse_ino_t id, uint64_t n) {
  if (id == FUSE_ROOT_ID) return;
  Inode* found = Find(id);
  if (found == nullptr) return;
  Inode& in = *found;
  std::lock_guard<std::mutex> l(mu_);
  in.nlookup = n >= in.nlookup ? 0 : in.nlookup - n;
  if (in.nlookup != 0) {
    state_->inodes().at(in.slot).nlookup.store(in.nlookup);
    return;
  }
  // Free the record before the fd closes (restart_state.h).
  const uint32_t slot = in.slot;
  state_->inodes().at(slot).live.store(0);
  index_.Set(slot, nullptr);
  map_.erase(std::make_pair(in.dev, in.ino));
  state_->inodes().Release(slot);
}

size_t InodeTable::Size() {
  std::lock_guard<std::mutex> l(mu_);
  return map_.size();
}

void InodeTable::Locked(dev_t dev, ino_t ino, const std::function<void(HookCell*)>& fn) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = map_.find(std::make_pair(dev, ino));
  fn(it == map_.end() ? nullptr : &it->second->hook);
}

}  // namespace migratefs::fs
