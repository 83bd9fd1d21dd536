#include "fs/inode.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace migratefs::fs {

Inode::~Inode() { close(fd); }

InodeTable::InodeTable(int root_fd, HookRegistryImpl* hooks) : hooks_(hooks) {
  struct stat st {};
  fstat(root_fd, &st);
  root_ = std::make_unique<Inode>(root_fd, st.st_dev, st.st_ino, st.st_mode);
  root_->nlookup = 1;
  if (hooks_ != nullptr) hooks_->SetIndex(this);
}

InodeTable::~InodeTable() {
  if (hooks_ != nullptr) hooks_->SetIndex(nullptr);
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
    auto fresh = std::make_unique<Inode>(fd, key.first, key.second, e->attr.st_mode);
    if (hooks_ != nullptr) fresh->hook.store(hooks_->InitialHook(key.first, key.second));
    in = fresh.get();
    map_.emplace(key, std::move(fresh));
  }
  in->nlookup++;
  in->parent = IdOf(parent);
  if (in->name != name) in->name = name;
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
  Inode& in = Get(id);
  std::lock_guard<std::mutex> l(mu_);
  in.nlookup = n >= in.nlookup ? 0 : in.nlookup - n;
  if (in.nlookup == 0) map_.erase(std::make_pair(in.dev, in.ino));
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
