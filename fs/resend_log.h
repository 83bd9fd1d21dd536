// Namespace ops that must not happen twice when the kernel resends them after a
// worker crash (issue 14).
//
// The problem. A worker killed after a syscall and before its reply leaves the
// request unanswered; FUSE_NOTIFY_RESEND hands it to the next worker, which would
// run it again: mkdir, mknod, symlink, link and O_EXCL creates would answer EEXIST,
// unlink and rmdir ENOENT, a rename ENOENT, and a RENAME_EXCHANGE would swap the
// names back. SIGKILL is acted on when a syscall returns, so "the syscall ran, the
// reply did not go out" is the usual shape of a crash in these ops, not a rare one.
//
// Who calls: the handlers of those ops (op_mkdir/mknod/symlink via new_node.cc,
// op_link, op_create with O_EXCL, op_unlink, op_rename). Each makes a ResendableOp
// before its syscall and keeps it until after its reply.
//
// What is recorded (in the RestartState memfd, so it outlives the worker):
//  1. before the syscall: the request's id and what the names the op touches are
//     (dev and inode, or absent);
//  2. right after it: the result;
//  3. after the reply: nothing (the record is freed).
//
// What a resent request (id with kResendBit) does with its record:
//  - result recorded: the result stands and the syscall is not run again.
//  - only step 1: the names tell whether the syscall ran. A created name that was
//    absent and is now there, a removed one that is gone or now another inode, a
//    moved inode now under the new name and not the old, two exchanged inodes each
//    under the other's name: the op happened and the request is answered as a
//    success. Otherwise the syscall runs. This is exact for everything that goes
//    through the mount: the kernel holds the request's directory locks (the
//    parent's i_rwsem; both parents' for a rename) until the request is answered,
//    across the crash, so no other caller can touch those names meanwhile. A change
//    made in SRC behind the mount's back in that window could fool it.
//  - no record: the worker died before step 1, so before the syscall: it runs.
//
// A record whose reply went out but that was not freed (a crash in between) names
// an id the kernel never sends again; it is reused once the worker that finds it
// has served for kStaleAfterSeconds. With no free record an op runs unrecorded (as
// before this existed) and a warning is logged once.
//
// Fault-injection seam: MIGRATEFS_FAULT_KILL_AFTER=PATH in the worker's environment
// makes the first op whose name (mkdir, unlink, rename, ...) is the content of the
// file PATH delete the file and SIGKILL its own worker right after its syscall: the
// worst moment, which the restart tests use.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <mutex>

#include "fs/restart_state.h"

namespace migratefs::fs {

class ResendLog {
 public:
  enum Kind : uint32_t {
    kCreatesName = 1,   // name 1 appears
    kRemovesName = 2,   // name 1 goes
    kMovesName = 3,     // name 1's inode moves to name 2
    kExchangesNames = 4,
  };
  static constexpr uint32_t kStarted = 1;
  static constexpr uint32_t kDone = 2;
  static constexpr uint64_t kStaleAfterSeconds = 60;

  // records: kResendRecords of them (RestartState::resend_records()); worker: this
  // worker's RestartHeader::starts.
  ResendLog(ResendRecord* records, uint32_t worker);

 private:
  friend class ResendableOp;
  // The record of request `id` (without the resend bit) a previous worker left, or null.
  ResendRecord* Find(uint64_t id);
  // A free (or stale) record claimed for request `id`, or null when none is free.
  ResendRecord* Claim(uint64_t id);
  void Free(ResendRecord* r);

  ResendRecord* records_;
  uint32_t worker_;
  uint64_t started_s_;
  std::mutex mu_;  // Find/Claim/Free: only this process writes the records
  bool warned_full_ = false;
};

// One namespace op of one request (see above). Keep it alive until the reply is out.
class ResendableOp {
 public:
  // what: the op's name (logs, the fault seam). dir1/name1: the name the op creates,
  // removes or moves; dir2/name2: a rename's destination.
  ResendableOp(fuse_req_t req, const char* what, ResendLog::Kind kind, int dir1, const char* name1, int dir2 = -1,
               const char* name2 = nullptr);
  ~ResendableOp();
  ResendableOp(const ResendableOp&) = delete;
  ResendableOp& operator=(const ResendableOp&) = delete;

  // Runs `syscall` (returns 0 or an errno) unless this request is a resend whose
  // effect is already there; returns the op's result either way.
  int Run(const std::function<int()>& syscall);
  // True when Run found the effect already there and did not run the syscall: a
  // create must then open the existing file (without O_EXCL).
  bool already_done() const { return already_done_; }

 private:
  bool HappenedSince() const;

  ResendLog* log_;
  const char* what_;
  ResendLog::Kind kind_;
  int dir1_, dir2_;
  const char* name1_;
  const char* name2_;
  ResendRecord* rec_ = nullptr;
  bool resent_ = false;       // a record from the dead worker was found
  bool already_done_ = false;
};

}  // namespace migratefs::fs
