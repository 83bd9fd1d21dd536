// The INIT parsing and reply editing behind init_reply.h, on hand-built messages.
#include "fs/kernel_protocol.h"

#include <gtest/gtest.h>
#include <linux/fuse.h>

#include <cstring>
#include <vector>

namespace migratefs::fs {
namespace {

std::vector<uint8_t> InitRequest(uint64_t unique, uint32_t flags) {
  fuse_in_header h{};
  h.len = sizeof(fuse_in_header) + sizeof(fuse_init_in);
  h.opcode = FUSE_INIT;
  h.unique = unique;
  fuse_init_in in{};
  in.major = 7;
  in.minor = 38;
  in.flags = flags;
  std::vector<uint8_t> out(h.len);
  memcpy(out.data(), &h, sizeof(h));
  memcpy(out.data() + sizeof(h), &in, sizeof(in));
  return out;
}

struct Reply {
  fuse_out_header h{};
  fuse_init_out out{};
  iovec iov[2];
  Reply(uint64_t unique, int32_t error, uint32_t flags) {
    h.len = sizeof(h) + sizeof(out);
    h.error = error;
    h.unique = unique;
    out.major = 7;
    out.minor = 38;
    out.flags = flags;
    iov[0] = {&h, sizeof(h)};
    iov[1] = {&out, sizeof(out)};
  }
  uint32_t SentFlags() const {
    fuse_init_out sent;
    memcpy(&sent, iov[1].iov_base, sizeof(sent));
    return sent.flags;
  }
};

TEST(KernelProtocol, ParsesTheIdAndFlagsOfAnInitRequest) {
  InitRequestInfo info = ParseInitRequest(InitRequest(42, FUSE_ASYNC_READ | FUSE_HANDLE_KILLPRIV_V2));
  EXPECT_EQ(info.unique, 42u);
  EXPECT_EQ(info.flags, uint32_t(FUSE_ASYNC_READ | FUSE_HANDLE_KILLPRIV_V2));
  std::vector<uint8_t> cut = InitRequest(42, FUSE_ASYNC_READ);
  cut.resize(sizeof(fuse_in_header) + 8);  // ends before the flags
  info = ParseInitRequest(cut);
  EXPECT_EQ(info.unique, 0u);
  EXPECT_EQ(info.flags, 0u);
}

TEST(KernelProtocol, AddsFlagsToTheMatchingInitReplyOnly) {
  std::vector<uint8_t> storage;
  Reply ok(42, 0, FUSE_ASYNC_READ);
  ASSERT_TRUE(AddInitReplyFlags(ok.iov, 2, 42, kInitHandleKillprivV2, &storage));
  EXPECT_EQ(ok.SentFlags(), uint32_t(FUSE_ASYNC_READ | FUSE_HANDLE_KILLPRIV_V2));
  EXPECT_EQ(ok.out.flags, uint32_t(FUSE_ASYNC_READ));  // libfuse's own buffer is not written

  Reply other(44, 0, FUSE_ASYNC_READ);
  EXPECT_FALSE(AddInitReplyFlags(other.iov, 2, 42, kInitHandleKillprivV2, &storage));
  EXPECT_EQ(other.SentFlags(), uint32_t(FUSE_ASYNC_READ));

  Reply refused(42, -EPROTO, 0);
  EXPECT_FALSE(AddInitReplyFlags(refused.iov, 2, 42, kInitHandleKillprivV2, &storage));
  Reply header_only(42, 0, 0);
  EXPECT_FALSE(AddInitReplyFlags(header_only.iov, 1, 42, kInitHandleKillprivV2, &storage));
}

}  // namespace
}  // namespace migratefs::fs
