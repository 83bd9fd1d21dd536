// What each request frame of a receiving session asks for: validation, then an
// ordered disk operation (receive_disk.cc) or, for open_image, admission of the file.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "net/image_identity.h"
#include "net/image_name.h"
#include "net/peer/receive_admission.h"
#include "net/peer/receive_file.h"
#include "net/peer/receive_session_impl.h"

namespace migratefs::net {

namespace asio = boost::asio;
using asio::ip::tcp;
using wire::FrameType;

void ReceiveSession::Impl::HandleFrame(const FrameHeader& h, PayloadBuffer payload) {
  switch (h.type) {
    case FrameType::kOpenImage:
      HandleOpen(h, payload.get());
      return;
    case FrameType::kData:
    case FrameType::kZero:
    case FrameType::kResize:
    case FrameType::kSync:
    case FrameType::kHashRequest:
    case FrameType::kFinishImage:
    case FrameType::kAbortImage:
    case FrameType::kPostcopy:
      HandleImageOp(h, std::move(payload));
      return;
    default:
      ProtocolError(MakeError(errc::kBadRequest,
                              std::string("protocol: unexpected ") + FrameTypeName(h.type) + " frame from a client"));
  }
}

void ReceiveSession::Impl::HandleImageOp(const FrameHeader& h, PayloadBuffer payload) {
  auto it = images_.find(h.handle);
  if (it == images_.end()) {
    SendError(h.request_id, MakeError(errc::kInvalidArgument, "unknown image handle " + std::to_string(h.handle)));
    return;
  }
  Image* img = it->second.get();
  if (img->closing) {
    SendError(h.request_id, MakeError(errc::kWrongState, "image " + img->name + " is being finished or aborted"));
    return;
  }
  if (img->verify_only && h.type != FrameType::kHashRequest) {
    SendError(h.request_id, MakeError(errc::kWrongState, img->name + " is open for verify only: " +
                                                             FrameTypeName(h.type) + " refused"));
    return;
  }
  const uint16_t allowed_flags = h.type == FrameType::kAbortImage ? wire::kFlagKeepPartial
                                 : h.type == FrameType::kData    ? wire::kFlagAwaited
                                                                 : 0;
  if (h.flags & ~allowed_flags) {
    SendError(h.request_id, MakeError(errc::kBadRequest, std::string("flags not valid for ") + FrameTypeName(h.type)));
    return;
  }
  auto op = std::make_unique<Op>();
  op->img = img;
  op->request_id = h.request_id;
  op->offset = h.offset;
  op->length = h.length;
  op->flags = h.flags;
  auto bad = [&](std::string msg) {
    SendError(h.request_id, MakeError(errc::kInvalidArgument, std::string(FrameTypeName(h.type)) + " on " +
                                                                  img->name + ": " + msg));
  };
  bool ready = false;
  switch (h.type) {
    case FrameType::kData:
      if (h.length == 0 || h.length != h.payload_len) return bad("payload length does not match length");
      if (h.offset > wire::kMaxImageSize - h.length) return bad("range beyond the image size limit");
      if (img->postcopy && !AdmitArrival(h, img, op.get(), payload)) return;
      op->kind = Op::Kind::kWrite;
      op->buf = std::move(payload);
      buffered_bytes_ += h.length;
      ready = img->order.AddRange(op.get(), h.offset, h.offset + h.length);
      break;
    case FrameType::kZero:
      if (h.offset > wire::kMaxImageSize || h.length > wire::kMaxImageSize - h.offset) {
        return bad("range beyond the image size limit");
      }
      if (h.length == 0) {
        SendAck(h.request_id, h.handle);
        return;
      }
      if (img->postcopy && !AdmitArrival(h, img, op.get(), payload)) return;
      op->kind = Op::Kind::kZero;
      ready = img->order.AddRange(op.get(), h.offset, h.offset + h.length);
      break;
    case FrameType::kResize:
      if (h.length > wire::kMaxImageSize) return bad("size beyond the image size limit");
      if (img->postcopy) {
        SendError(h.request_id, MakeError(errc::kWrongState, img->name + " is in postcopy: its size is the VM's now"));
        return;
      }
      op->kind = Op::Kind::kResize;
      ready = img->order.AddRange(op.get(), 0, UINT64_MAX);
      break;
    case FrameType::kSync:
      op->kind = Op::Kind::kSync;
      ready = img->order.AddBarrier(op.get());
      break;
    case FrameType::kHashRequest: {
      const uint64_t max_blocks = wire::kMaxImageSize / img->block_size;
      if (h.length > wire::kMaxHashBlocks || h.offset > max_blocks || h.length > max_blocks - h.offset) {
        return bad("block range out of bounds");
      }
      op->kind = Op::Kind::kHash;
      ready = img->order.AddBarrier(op.get());
      break;
    }
    case FrameType::kFinishImage:
      if (img->postcopy && !img->postcopy->AllLocal()) {
        SendError(h.request_id, MakeError(errc::kWrongState, img->name + " still lacks " +
                                                                 std::to_string(img->postcopy->Info().blocks_remote) +
                                                                 " blocks of the source"));
        return;
      }
      op->kind = Op::Kind::kFinish;
      img->closing = true;
      ready = img->order.AddBarrier(op.get());
      break;
    case FrameType::kAbortImage:
      if (img->postcopy) {
        SendError(h.request_id, MakeError(errc::kWrongState, img->name + " is the VM's copy now (postcopy): not removed"));
        return;
      }
      op->kind = Op::Kind::kAbort;
      img->closing = true;
      ready = img->order.AddBarrier(op.get());
      break;
    case FrameType::kPostcopy: {
      if (img->postcopy) return bad("already in postcopy");
      if (h.length > wire::kMaxImageSize) return bad("size beyond the image size limit");
      if (h.offset == 0 || h.offset > wire::kMaxPostcopyTimeoutS) return bad("timeout out of range");
      const uint64_t blocks = (h.length + img->block_size - 1) / img->block_size;
      if (h.payload_len != (blocks + 7) / 8) return bad("block map size does not match the image size");
      op->kind = Op::Kind::kPostcopy;
      op->blob.assign(reinterpret_cast<const char*>(payload.get()), h.payload_len);
      pool_.Put(std::move(payload), h.payload_len);
      ready = img->order.AddBarrier(op.get());
      break;
    }
    default:
      return;
  }
  Op* raw = op.release();
  live_.insert(raw);
  if (ready) ready_.push_back(raw);
}

void ReceiveSession::Impl::HandleOpen(const FrameHeader& h, const uint8_t* payload) {
  auto op = DecodeOpenImage(payload, h.payload_len);
  if (!op.ok()) {
    SendError(h.request_id, op.error());
    return;
  }
  const OpenImagePayload& o = op.value();
  auto r = (h.flags & wire::kFlagVerify) != 0     ? OpenForVerify(o)
           : (h.flags & wire::kFlagPostcopy) != 0 ? ReattachPostcopy(o)
                                                  : OpenImage(o, (h.flags & wire::kFlagResume) != 0,
                                                              (h.flags & wire::kFlagOverwrite) != 0);
  if (!r.ok()) {
    spdlog::warn("peer server: open_image refused: {}: {}", r.error().code, r.error().message);
    SendError(h.request_id, r.error());
    return;
  }
  SendAck(h.request_id, r.value().first, EncodeOpenReply(r.value().second));
}

Status ReceiveSession::Impl::CheckOpenRequest(const OpenImagePayload& o) const {
  Status v = ValidateImageName(o.name);
  if (!v.ok()) return v.error();
  if (o.block_size < wire::kMinBlockSize || o.block_size > wire::kMaxBlockSize) {
    return MakeError(errc::kInvalidArgument, "block size " + std::to_string(o.block_size) + " out of range");
  }
  if (o.size > wire::kMaxImageSize) return MakeError(errc::kInvalidArgument, "image size over the limit");
  if (images_.size() >= cfg_.max_images) {
    return MakeError(errc::kInvalidArgument, "too many images open on this connection");
  }
  if (!cfg_.instance_id.empty() && o.instance == cfg_.instance_id) {
    return MakeError(errc::kTargetIsSelf, "the target of " + o.name +
                                              " is the source daemon itself; nothing was changed");
  }
  return OkStatus();
}

Result<std::pair<uint32_t, OpenReplyPayload>> ReceiveSession::Impl::OpenImage(const OpenImagePayload& o, bool resume, bool overwrite) {
  if (Status st = CheckOpenRequest(o); !st.ok()) return st.error();
  auto opened = OpenReceiveFile(cfg_.src_dirfd, o.name);
  if (!opened.ok()) return opened.error();
  ReceiveFile f = opened.value();
  // Claim it first: a stale session of a source that reconnects closes its
  // descriptors here, so the checks below see only other writers.
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (source_instance_.empty()) source_instance_ = o.instance;
  }
  if (cfg_.receiving && cfg_.receiving->Acquire(f.dev, f.ino, this, o.instance, cfg_.idle_takeover,
                                                cfg_.takeover_wait) != ReceivingSet::Claim::kOk) {
    CloseReceiveFile(f, false);  // someone else's file: never unlink it
    return MakeError(errc::kBusy, o.name + " is already being received by another (active) connection");
  }
  auto refuse = [&](const Error& e) -> Error {
    if (cfg_.receiving) cfg_.receiving->Release(f.dev, f.ino, this);
    CloseReceiveFile(f, true);  // removes the file only if this open created it
    return e;
  };
  for (const auto& [h, other] : images_) {
    if (other->dev == f.dev && other->ino == f.ino) return refuse(MakeError(errc::kBusy, o.name + " is already open on this connection"));
  }
  if (!f.created && cfg_.observer) {
    if (Status st = cfg_.observer->CheckReceivable(o.name, f.dev, f.ino, o.instance); !st.ok()) return refuse(st.error());
  }
  if (Status st = AdmitReceiveFile(f, o.name, ReceiveClaim{o.identity, overwrite}); !st.ok()) {
    return refuse(st.error());
  }
  if (Status st = MakeReceiveFileWritable(f, o.name); !st.ok()) return refuse(st.error());
  if (Status st = PrepareReceiveFile(f, o.name, o.size, resume, o.identity); !st.ok()) return refuse(st.error());
  const OpenReplyPayload reply{!f.created, f.size_before, FreeBytes(f.fd)};
  if (cfg_.observer) cfg_.observer->OnReceiving(o.name, f.dev, f.ino);
  return std::make_pair(AddImage(f, o, /*verify_only=*/false), reply);
}

// A verify open (kFlagVerify) looks at a copy without touching it: no claim in the
// receiving set, no admission of writers, no marks, no observer calls. The VM may
// already run on it (after finish), so it is opened read-only and only HashRequest
// is served; its hashes are a snapshot of whatever the copy holds when asked.
Result<std::pair<uint32_t, OpenReplyPayload>> ReceiveSession::Impl::OpenForVerify(const OpenImagePayload& o) {
  if (Status st = CheckOpenRequest(o); !st.ok()) return st.error();
  auto opened = OpenReceiveFile(cfg_.src_dirfd, o.name, /*may_create=*/false);
  if (!opened.ok()) return opened.error();
  ReceiveFile f = opened.value();
  const std::string have = ReadImageIdentity(f.fd);
  if (!o.identity.empty() && !have.empty() && have != o.identity) {
    CloseReceiveFile(f, false);
    return MakeError(errc::kTargetExists, o.name + " on the target is another image (identity " + have +
                                              ", the source's is " + o.identity + "): nothing to verify");
  }
  const OpenReplyPayload reply{true, f.size_before, FreeBytes(f.fd)};
  return std::make_pair(AddImage(f, o, /*verify_only=*/true), reply);
}

Result<std::pair<uint32_t, OpenReplyPayload>> ReceiveSession::Impl::ReattachPostcopy(const OpenImagePayload& o) {
  if (Status st = CheckOpenRequest(o); !st.ok()) return st.error();
  auto opened = OpenReceiveFile(cfg_.src_dirfd, o.name, /*may_create=*/false);
  if (!opened.ok()) return opened.error();
  ReceiveFile f = opened.value();
  std::shared_ptr<PostcopyImage> postcopy = cfg_.observer ? cfg_.observer->FindPostcopy(f.dev, f.ino) : nullptr;
  if (!postcopy || ReadImageIdentity(f.fd) != o.identity) {
    CloseReceiveFile(f, false);
    return MakeError(errc::kWrongState, o.name + " is not in postcopy here (was this daemon restarted?)");
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (source_instance_.empty()) source_instance_ = o.instance;
  }
  // The old session (a dead link) lets go of it first, fetches included.
  if (cfg_.receiving && cfg_.receiving->Acquire(f.dev, f.ino, this, o.instance, cfg_.idle_takeover,
                                                cfg_.takeover_wait) != ReceivingSet::Claim::kOk) {
    CloseReceiveFile(f, false);
    return MakeError(errc::kBusy, o.name + " is already being received by another (active) connection");
  }
  if (Status st = MakeReceiveFileWritable(f, o.name); !st.ok()) {
    if (cfg_.receiving) cfg_.receiving->Release(f.dev, f.ino, this);
    CloseReceiveFile(f, false);
    return st.error();
  }
  const OpenReplyPayload reply{true, f.size_before, FreeBytes(f.fd)};
  const uint32_t handle = AddImage(f, o, /*verify_only=*/false);
  Image* img = images_.at(handle).get();
  img->postcopy = std::move(postcopy);
  BindFetch(img);
  // What is still missing, before the open's ack: a source that lost its own record
  // (a restarted worker) learns it here; for one that kept it, it changes nothing.
  for (const auto& [first, count] : img->postcopy->RemoteRuns()) {
    SendFetch(handle, first, count, wire::kFlagFetchMap);
  }
  return std::make_pair(handle, reply);
}

bool ReceiveSession::Impl::AdmitArrival(const FrameHeader& h, Image* img, Op* op, PayloadBuffer& payload) {
  // In postcopy the source sends whole blocks only, one per frame.
  if (h.offset % img->block_size != 0 || h.length > img->block_size) {
    SendError(h.request_id, MakeError(errc::kInvalidArgument, std::string(FrameTypeName(h.type)) + " on " + img->name +
                                                                  " in postcopy: not one whole block"));
    return false;
  }
  if (img->postcopy->BeginArrival(h.offset / img->block_size)) {
    op->arrival = true;
    return true;
  }
  // Local already (the VM overwrote or cut it off, or a resend): the VM's bytes stay.
  if (payload) pool_.Put(std::move(payload), h.payload_len);
  SendAck(h.request_id, h.handle);
  return false;
}

void ReceiveSession::Impl::BindFetch(Image* img) {
  const uint32_t handle = img->handle;
  // Called under the postcopy's lock from a FUSE thread: hand over to the session's
  // thread. Unbind (CloseImage, Cleanup) runs before this session can go away.
  img->postcopy->Bind([this, handle](uint64_t first, uint64_t count) {
    asio::post(io_, [this, handle, first, count] { SendFetch(handle, first, count, 0); });
  });
}

void ReceiveSession::Impl::SendFetch(uint32_t handle, uint64_t first, uint64_t count, uint16_t flags) {
  if (shut_ || closing_) return;
  FrameHeader h;
  h.type = FrameType::kFetch;
  h.flags = flags;
  h.handle = handle;
  h.offset = first;
  h.length = count;
  Send(EncodeFrame(h, {}));
}

uint32_t ReceiveSession::Impl::AddImage(const ReceiveFile& f, const OpenImagePayload& o, bool verify_only) {
  auto img = std::make_unique<Image>();
  img->handle = next_handle_++;
  img->name = o.name;
  img->fd = f.fd;
  img->direct_fd = f.direct_fd;
  img->parent_fd = f.parent_fd;
  img->base = f.base;
  img->dev = f.dev;
  img->ino = f.ino;
  img->block_size = o.block_size;
  img->verify_only = verify_only;
  const uint32_t handle = img->handle;
  images_.emplace(handle, std::move(img));
  return handle;
}

}  // namespace migratefs::net
