#include "fs/kernel_protocol.h"

#include <linux/fuse.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace migratefs::fs {
namespace {

// Not in the 7.38 header libfuse 3.14 and bookworm ship.
constexpr int kNotifyResend = 7;
// Request ids the kernel issues count up in steps of 2 from 2; this one is never
// reached.
constexpr uint64_t kNeverIssuedUnique = 0x7ffffffffffffffeULL;

}  // namespace

int ReadInitRequest(int fuse_fd, std::vector<uint8_t>* out) {
  // The kernel refuses reads into buffers smaller than a WRITE request could be.
  std::vector<uint8_t> buf(size_t(2) << 20);
  ssize_t n;
  do {
    n = read(fuse_fd, buf.data(), buf.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  if (static_cast<size_t>(n) < sizeof(fuse_in_header)) return EPROTO;
  fuse_in_header h;
  memcpy(&h, buf.data(), sizeof(h));
  if (h.opcode != FUSE_INIT) return EPROTO;
  buf.resize(static_cast<size_t>(n));
  *out = std::move(buf);
  return 0;
}

std::vector<uint8_t> ReplayableInit(const uint8_t* saved, uint32_t len) {
  std::vector<uint8_t> req(saved, saved + len);
  if (len >= sizeof(fuse_in_header)) {
    fuse_in_header h;
    memcpy(&h, req.data(), sizeof(h));
    h.unique = kNeverIssuedUnique;
    memcpy(req.data(), &h, sizeof(h));
  }
  return req;
}

int NotifyResend(int fuse_fd) {
  fuse_out_header h{};
  h.len = sizeof(h);
  h.error = kNotifyResend;
  h.unique = 0;  // a notification, not a reply
  ssize_t n = write(fuse_fd, &h, sizeof(h));
  return n == static_cast<ssize_t>(sizeof(h)) ? 0 : (n < 0 ? errno : EIO);
}

static_assert(kInitHandleKillprivV2 == FUSE_HANDLE_KILLPRIV_V2);

InitRequestInfo ParseInitRequest(const std::vector<uint8_t>& init) {
  InitRequestInfo info;
  fuse_in_header h;
  fuse_init_in in{};
  if (init.size() < sizeof(h) + offsetof(fuse_init_in, flags) + sizeof(in.flags)) return info;
  memcpy(&h, init.data(), sizeof(h));
  memcpy(&in.flags, init.data() + sizeof(h) + offsetof(fuse_init_in, flags), sizeof(in.flags));
  info.unique = h.unique;
  info.flags = in.flags;
  return info;
}

bool AmendInitReplyMessage(iovec* iov, int count, uint64_t unique, const InitReplyAmendment& amend,
                           std::vector<uint8_t>* storage) {
  // libfuse sends a reply as the header and then the argument, each its own iovec.
  if (count != 2 || iov[0].iov_len != sizeof(fuse_out_header)) return false;
  fuse_out_header h;
  memcpy(&h, iov[0].iov_base, sizeof(h));
  if (h.unique != unique || h.error != 0) return false;
  fuse_init_out out{};
  if (iov[1].iov_len < offsetof(fuse_init_out, flags) + sizeof(out.flags)) return false;
  storage->assign(static_cast<const uint8_t*>(iov[1].iov_base),
                  static_cast<const uint8_t*>(iov[1].iov_base) + iov[1].iov_len);
  memcpy(&out.flags, storage->data() + offsetof(fuse_init_out, flags), sizeof(out.flags));
  out.flags |= amend.flags;
  memcpy(storage->data() + offsetof(fuse_init_out, flags), &out.flags, sizeof(out.flags));
  const size_t pages_at = offsetof(fuse_init_out, max_pages);
  if (amend.max_pages != 0 && (out.flags & FUSE_MAX_PAGES) && iov[1].iov_len >= pages_at + sizeof(out.max_pages)) {
    memcpy(storage->data() + pages_at, &amend.max_pages, sizeof(out.max_pages));
  }
  iov[1].iov_base = storage->data();
  return true;
}

}  // namespace migratefs::fs
