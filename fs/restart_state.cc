#include "fs/restart_state.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace migratefs::fs {
namespace {

constexpr uint64_t kMagic = 0x4d46535253543031ULL;  // "MFSRST01"
constexpr uint32_t kVersion = 1;

// Layout of the memfd. The file is sparse: only pages of records ever used take
// memory. 4 M inodes and 1 M open handles are far above what one mount serves.
constexpr uint32_t kInodeCapacity = 4u << 20;
constexpr uint32_t kHandleCapacity = 1u << 20;
constexpr size_t kHeaderRegion = 64 << 10;
constexpr size_t kInodeRegion = size_t(kInodeCapacity) * sizeof(InodeRecord);
constexpr size_t kHandleRegion = size_t(kHandleCapacity) * sizeof(HandleRecord);
// Each journal slot: an 8-byte length, then the document.
constexpr size_t kJournalSlot = 4 << 20;
constexpr size_t kJournalRegion = 2 * kJournalSlot;
constexpr size_t kTotal = kHeaderRegion + kInodeRegion + kHandleRegion + kJournalRegion;

// The resend records take the upper half of the header region.
constexpr size_t kResendOffset = kHeaderRegion / 2;
static_assert(sizeof(RestartHeader) <= kResendOffset);
static_assert(kResendOffset + kResendRecords * sizeof(ResendRecord) <= kHeaderRegion);
static_assert(std::atomic<uint32_t>::is_always_lock_free && std::atomic<uint64_t>::is_always_lock_free,
              "records are shared between processes: their atomics must be address-free");

Error Fail(const std::string& what) {
  return MakeError(errc::kInternal, "restart state: " + what + ": " + strerror(errno));
}

void* MapAll(int fd) {
  void* p = mmap(nullptr, kTotal, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  return p == MAP_FAILED ? nullptr : p;
}

}  // namespace

RestartState::RestartState(int fd, bool owned, void* base)
    : fd_(fd),
      owned_(owned),
      base_(base),
      header_(static_cast<RestartHeader*>(base)),
      inodes_(reinterpret_cast<InodeRecord*>(static_cast<char*>(base) + kHeaderRegion), kInodeCapacity,
              &header_->inode_high),
      handles_(reinterpret_cast<HandleRecord*>(static_cast<char*>(base) + kHeaderRegion + kInodeRegion),
               kHandleCapacity, &header_->handle_high) {}

Result<std::unique_ptr<RestartState>> RestartState::Create() {
  int fd = memfd_create("migratefs-state", MFD_CLOEXEC);
  if (fd < 0) return Fail("memfd_create");
  if (ftruncate(fd, kTotal) < 0) {
    close(fd);
    return Fail("ftruncate");
  }
  void* base = MapAll(fd);
  if (base == nullptr) {
    close(fd);
    return Fail("mmap");
  }
  auto* h = static_cast<RestartHeader*>(base);  // zero-filled: every count is 0
  h->magic = kMagic;
  h->version = kVersion;
  h->fuse_fd = -1;
  h->src_fd = -1;
  h->last_status = -1;
  return std::unique_ptr<RestartState>(new RestartState(fd, true, base));
}

Result<std::unique_ptr<RestartState>> RestartState::Adopt(int fd) {
  struct stat st {};
  if (fstat(fd, &st) < 0) return Fail("fd " + std::to_string(fd));
  if (static_cast<size_t>(st.st_size) != kTotal) {
    errno = EINVAL;
    return Fail("fd " + std::to_string(fd) + " is not a state memfd (size)");
  }
  void* base = MapAll(fd);
  if (base == nullptr) return Fail("mmap");
  auto* h = static_cast<RestartHeader*>(base);
  if (h->magic != kMagic || h->version != kVersion) {
    munmap(base, kTotal);
    errno = EINVAL;
    return Fail("fd " + std::to_string(fd) + " holds another layout (a binary of another version?)");
  }
  auto s = std::unique_ptr<RestartState>(new RestartState(fd, false, base));
  s->inodes_.RebuildFreeList([](const InodeRecord& r) { return r.live.load() != 0; });
  s->handles_.RebuildFreeList([](const HandleRecord& r) { return r.kind.load() != 0; });
  return s;
}

RestartState::~RestartState() {
  munmap(base_, kTotal);
  if (owned_) close(fd_);
}

std::vector<int> RestartState::NamedFds() {
  std::vector<int> fds = {fd_};
  RestartHeader& h = *header_;
  if (h.fuse_fd >= 0) fds.push_back(h.fuse_fd);
  if (h.src_fd >= 0) fds.push_back(h.src_fd);
  for (uint32_t i = 0; i < h.n_kept_fds && i < kMaxKeptFds; i++) fds.push_back(h.kept_fds[i]);
  for (uint32_t s = 0; s < inodes_.high(); s++) {
    if (inodes_.at(s).live.load() != 0) fds.push_back(inodes_.at(s).fd);
  }
  for (uint32_t s = 0; s < handles_.high(); s++) {
    if (handles_.at(s).kind.load() != 0) fds.push_back(handles_.at(s).fd);
  }
  return fds;
}

ResendRecord* RestartState::resend_records() {
  return reinterpret_cast<ResendRecord*>(static_cast<char*>(base_) + kResendOffset);
}

char* RestartState::JournalSlot(uint32_t slot) {
  return static_cast<char*>(base_) + kHeaderRegion + kInodeRegion + kHandleRegion + (slot - 1) * kJournalSlot;
}

std::string RestartState::Load() {
  std::lock_guard<std::mutex> l(journal_mu_);
  const uint32_t slot = header_->journal_slot.load();
  if (slot != 1 && slot != 2) return "";
  const char* p = JournalSlot(slot);
  uint64_t len;
  memcpy(&len, p, sizeof(len));
  if (len > kJournalSlot - sizeof(len)) return "";
  return std::string(p + sizeof(len), len);
}

bool RestartState::Save(const std::string& doc) {
  if (doc.size() > kJournalSlot - sizeof(uint64_t)) return false;
  std::lock_guard<std::mutex> l(journal_mu_);
  const uint32_t next = header_->journal_slot.load() == 1 ? 2 : 1;
  char* p = JournalSlot(next);
  const uint64_t len = doc.size();
  memcpy(p + sizeof(len), doc.data(), doc.size());
  memcpy(p, &len, sizeof(len));
  header_->journal_slot.store(next);  // the switch: a crash before it keeps the old one
  return true;
}

std::vector<int> OpenFds() {
  std::vector<int> fds;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return fds;
  const int own = dirfd(d);
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    int fd = atoi(e->d_name);
    if (fd != own) fds.push_back(fd);
  }
  closedir(d);
  std::sort(fds.begin(), fds.end());
  return fds;
}

void CloseFdsExcept(const std::vector<int>& keep) {
  std::vector<int> sorted = keep;
  std::sort(sorted.begin(), sorted.end());
  for (int fd : OpenFds()) {
    if (fd > 2 && !std::binary_search(sorted.begin(), sorted.end(), fd)) close(fd);
  }
}

}  // namespace migratefs::fs
