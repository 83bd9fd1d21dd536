#include "fs/init_reply.h"

#include <sys/uio.h>

#include "fs/kernel_protocol.h"

namespace migratefs::fs {
namespace {

// The INIT being answered on this thread: ProcessInitAddingFlags runs libfuse's INIT
// handler synchronously, and libfuse writes the reply from the same thread. Every
// other writev sees nullptr and costs one thread-local load.
struct PendingInit {
  uint64_t unique;
  InitReplyAmendment amend;
  bool amended = false;
  std::vector<uint8_t> storage;
};
thread_local PendingInit* t_pending = nullptr;

}  // namespace

void AmendInitReply(iovec* iov, int count) {
  if (t_pending != nullptr && !t_pending->amended &&
      AmendInitReplyMessage(iov, count, t_pending->unique, t_pending->amend, &t_pending->storage)) {
    t_pending->amended = true;
  }
}

uint32_t ProcessInitAmending(fuse_session* se, const std::vector<uint8_t>& init, const InitReplyAmendment& wanted) {
  const InitRequestInfo info = ParseInitRequest(init);
  PendingInit pending{info.unique, wanted, false, {}};
  pending.amend.flags &= info.flags;
  if (pending.amend.flags != 0 || pending.amend.max_pages != 0) t_pending = &pending;
  fuse_buf buf{};
  buf.mem = const_cast<uint8_t*>(init.data());
  buf.size = init.size();
  fuse_session_process_buf(se, &buf);
  t_pending = nullptr;
  return pending.amended ? pending.amend.flags : 0;
}

}  // namespace migratefs::fs
