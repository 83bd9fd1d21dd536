// What a worker must leave behind so that the next worker can serve the same mount
// as if nothing had happened: a memfd (held open by the supervisor, see
// supervisor.h) with a header and two arrays of fixed-size records, one per inode
// the kernel knows and one per open file or directory handle.
//
// Why it works without any fsync or log replay:
//  - The worker shares its fd table with the supervisor (CLONE_FILES), so every fd a
//    record names (backing O_PATH fds, open files, /dev/fuse) outlives the worker.
//  - The records live in MAP_SHARED memory of the memfd: a store is in the memfd the
//    moment it is made, and a SIGKILL cannot take it back.
//  - Every record is written before the reply that hands its id (node id, fh) to the
//    kernel goes out, and marked free before its fd is closed. A crash between the
//    steps leaves an fd no record names (closed by the next worker) or a lookup count
//    one too high (an inode kept until unmount), never an id that points nowhere.
//
// Node ids are slot + 2 (1 is the root); fh values are slot numbers. Both are as
// stable as the records, which is what the kernel needs: it keeps sending the ids it
// was given.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "migratefs/services.h"
#include "migratefs/status.h"

namespace migratefs::fs {

inline constexpr size_t kMaxInitBytes = 512;
inline constexpr size_t kMaxKeptFds = 16;
inline constexpr size_t kRecordNameMax = 255;

// One inode the kernel holds a reference to. `live` is set last on create and
// cleared first on removal.
struct InodeRecord {
  std::atomic<uint32_t> live;
  int32_t fd;  // O_PATH
  uint32_t type;
  uint32_t name_len;
  uint64_t dev;
  uint64_t ino;
  std::atomic<uint64_t> nlookup;
  std::atomic<uint64_t> parent;
  char name[kRecordNameMax + 1];
};

enum class HandleKind : uint32_t { kFree = 0, kFile = 1, kDir = 2 };

// One open file or directory (an fh the kernel holds).
struct HandleRecord {
  std::atomic<uint32_t> kind;  // HandleKind; set last, cleared first
  int32_t fd;
  uint64_t node;  // node id of the inode it was opened on
  int32_t flags;  // backing open flags (files)
  uint32_t cached_writer;
};

// One namespace op in progress (resend_log.h): what a resent request needs to tell
// whether the dead worker had already carried it out. Lives in the header region, in
// pages an older binary left zero, so the layout version stays the same.
struct ResendRecord {
  std::atomic<uint64_t> unique;  // the request's id without the resend bit; 0 = free
  std::atomic<uint32_t> state;   // ResendLog::kStarted / kDone; 0 while being filled
  uint32_t worker;               // RestartHeader::starts of the worker that wrote it
  int32_t err;                   // kDone: the op's result (0 or an errno)
  uint32_t kind;                 // ResendLog::Kind
  uint64_t dev1, ino1;           // what name 1 was before the op (0, 0: absent)
  uint64_t dev2, ino2;           // what name 2 was (rename only)
  uint64_t claimed_s;            // CLOCK_MONOTONIC seconds at claim
};
inline constexpr uint32_t kResendRecords = 256;

struct RestartHeader {
  uint64_t magic;
  uint32_t version;
  // Set by the worker once the mount exists and INIT has been answered: from then on
  // a new worker must resume, not mount.
  std::atomic<uint32_t> mounted;
  int32_t fuse_fd;
  int32_t src_fd;  // O_PATH on SRC: the root inode
  uint32_t init_len;
  uint8_t init[kMaxInitBytes];  // the kernel's FUSE_INIT request, as read
  std::atomic<uint32_t> inode_high;   // slots ever used
  std::atomic<uint32_t> handle_high;
  // Which journal slot holds the services' document: 0 none, 1 or 2 (Save writes the
  // other one, then flips this).
  std::atomic<uint32_t> journal_slot;
  // Written by the supervisor before it starts a worker.
  uint32_t starts;       // workers started so far (1 = the first)
  int32_t last_status;   // wait status of the worker before this one (-1: none)
  uint32_t n_kept_fds;   // the supervisor's own fds: never closed by a worker
  int32_t kept_fds[kMaxKeptFds];
};

// Fixed-size slots of Record in a region of the memfd. Alloc/Release are
// serialized by the caller (InodeTable, HandleTable hold their own locks).
template <typename Record>
class SlotArray {
 public:
  SlotArray(Record* base, uint32_t capacity, std::atomic<uint32_t>* high)
      : base_(base), capacity_(capacity), high_(high) {}
  Record& at(uint32_t slot) { return base_[slot]; }
  uint32_t high() const { return high_->load(); }
  uint32_t capacity() const { return capacity_; }
  // A free slot (its record not live), or UINT32_MAX when the array is full.
  uint32_t Alloc() {
    if (!free_.empty()) {
      uint32_t s = free_.back();
      free_.pop_back();
      return s;
    }
    uint32_t h = high_->load();
    if (h >= capacity_) return UINT32_MAX;
    high_->store(h + 1);
    return h;
  }
  void Release(uint32_t slot) { free_.push_back(slot); }
  // After a restart: every slot below high that `live(record)` says is unused.
  template <typename Pred>
  void RebuildFreeList(Pred live) {
    free_.clear();
    for (uint32_t s = high_->load(); s-- > 0;) {
      if (!live(base_[s])) free_.push_back(s);
    }
  }

 private:
  Record* base_;
  uint32_t capacity_;
  std::atomic<uint32_t>* high_;
  std::vector<uint32_t> free_;
};

// Also the services' RestartJournal: two slots in the memfd, written alternately.
class RestartState : public RestartJournal {
 public:
  // A fresh, empty state in a new memfd.
  static Result<std::unique_ptr<RestartState>> Create();
  // Maps the state a previous worker (or supervisor) left in memfd `fd` (not owned).
  static Result<std::unique_ptr<RestartState>> Adopt(int fd);
  ~RestartState() override;
  RestartState(const RestartState&) = delete;
  RestartState& operator=(const RestartState&) = delete;

  int fd() const { return fd_; }
  RestartHeader& header() { return *header_; }
  SlotArray<InodeRecord>& inodes() { return inodes_; }
  SlotArray<HandleRecord>& handles() { return handles_; }
  // kResendRecords records for resend_log.h.
  ResendRecord* resend_records();

  // Every fd the state names (fuse, SRC, live records, the supervisor's, the memfd):
  // what a new worker keeps; the rest of the shared fd table is the dead worker's.
  std::vector<int> NamedFds();

  std::string Load() override;
  bool Save(const std::string& doc) override;

 private:
  char* JournalSlot(uint32_t slot);  // 1 or 2
  RestartState(int fd, bool owned, void* base);

  int fd_;
  bool owned_;
  void* base_;
  RestartHeader* header_;
  SlotArray<InodeRecord> inodes_;
  SlotArray<HandleRecord> handles_;
  std::mutex journal_mu_;
};

// Closes every fd of this process that is not in `keep` (and not 0, 1, 2). Run by a
// new worker before it opens anything itself.
void CloseFdsExcept(const std::vector<int>& keep);

// Every fd open in this process right now (from /proc/self/fd), ascending.
std::vector<int> OpenFds();

}  // namespace migratefs::fs
