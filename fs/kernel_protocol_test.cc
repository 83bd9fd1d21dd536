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
  fuse_init_out Sent() const {
    fuse_init_out sent;
    memcpy(&sent, iov[1].iov_base, sizeof(sent));
    return sent;
  }
  uint32_t SentFlags() const { return Sent().flags; }
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
  const InitReplyAmendment v2{kInitHandleKillprivV2, 0};
  Reply ok(42, 0, FUSE_ASYNC_READ);
  ASSERT_TRUE(AmendInitReplyMessage(ok.iov, 2, 42, v2, &storage));
  EXPECT_EQ(ok.SentFlags(), uint32_t(FUSE_ASYNC_READ | FUSE_HANDLE_KILLPRIV_V2));
  EXPECT_EQ(ok.out.flags, uint32_t(FUSE_ASYNC_READ));  // libfuse's own buffer is not written

  Reply other(44, 0, FUSE_ASYNC_READ);
  EXPECT_FALSE(AmendInitReplyMessage(other.iov, 2, 42, v2, &storage));
  EXPECT_EQ(other.SentFlags(), uint32_t(FUSE_ASYNC_READ));

  Reply refused(42, -EPROTO, 0);
  EXPECT_FALSE(AmendInitReplyMessage(refused.iov, 2, 42, v2, &storage));
  Reply header_only(42, 0, 0);
  EXPECT_FALSE(AmendInitReplyMessage(header_only.iov, 1, 42, v2, &storage));
}

// max_pages means something only with FUSE_MAX_PAGES in the reply; max_write stays.
TEST(KernelProtocol, ReplacesMaxPagesOnlyWhenTheReplyNegotiatesIt) {
  std::vector<uint8_t> storage;
  const InitReplyAmendment pages{0, kReadPages};
  Reply with(42, 0, FUSE_MAX_PAGES);
  with.out.max_pages = 255;
  with.out.max_write = 255 * 4096;
  ASSERT_TRUE(AmendInitReplyMessage(with.iov, 2, 42, pages, &storage));
  EXPECT_EQ(with.Sent().max_pages, kReadPages);
  EXPECT_EQ(with.Sent().max_write, 255u * 4096);
  EXPECT_EQ(with.SentFlags(), uint32_t(FUSE_MAX_PAGES));

  Reply without(42, 0, FUSE_ASYNC_READ);
  ASSERT_TRUE(AmendInitReplyMessage(without.iov, 2, 42, pages, &storage));
  EXPECT_EQ(without.Sent().max_pages, 0);
}

}  // namespace
}  // namespace migratefs::fs
