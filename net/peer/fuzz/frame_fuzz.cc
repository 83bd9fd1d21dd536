// libFuzzer target for the peer frame decoder and the payload codecs a receiver runs
// on untrusted bytes. Build: scripts/fuzz.sh (clang, -DMIGRATEFS_FUZZ=ON).
//
// Properties checked besides "no crash / no sanitizer report":
// - FrameReader never yields a payload longer than MaxPayloadFor(type);
// - every frame it yields re-encodes to the same bytes (decode/encode round trip);
// - a name ValidateImageName accepts never has a "..", "." or empty component and is
//   not absolute.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "net/peer/frame.h"
#include "net/image_name.h"

using namespace migratefs::net;  // NOLINT

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckName(const std::string& name) {
  if (!ValidateImageName(name).ok()) return;
  Check(!name.empty() && name[0] != '/');
  Check(name.find('\0') == std::string::npos);
  size_t start = 0;
  while (true) {
    const size_t slash = name.find('/', start);
    const std::string comp = name.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    Check(!comp.empty() && comp != "." && comp != "..");
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // 1) The stream decoder, fed in two uneven pieces.
  FrameReader r;
  const size_t cut = size ? data[0] % (size + 1) : 0;
  r.Append(data, cut);
  for (int pass = 0; pass < 2; ++pass) {
    while (true) {
      auto f = r.Next();
      if (!f.ok() || !f.value()) break;
      const Frame& fr = *f.value();
      Check(fr.payload.size() == fr.header.payload_len);
      Check(fr.payload.size() <= MaxPayloadFor(fr.header.type));
      const std::string re = EncodeFrame(fr.header, std::string_view(reinterpret_cast<const char*>(fr.payload.data()),
                                                                     fr.payload.size()));
      FrameReader again;
      again.Append(re.data(), re.size());
      auto g = again.Next();
      Check(g.ok() && g.value() && g.value()->header.checksum == fr.header.checksum);
      // Payload decoders a server or client runs on a frame of that type.
      const uint8_t* p = fr.payload.data();
      const size_t n = fr.payload.size();
      switch (fr.header.type) {
        case migratefs::wire::FrameType::kHello:
        case migratefs::wire::FrameType::kChallenge:
          (void)DecodeHello(p, n);
          break;
        case migratefs::wire::FrameType::kOpenImage: {
          auto o = DecodeOpenImage(p, n);
          if (o.ok()) CheckName(o.value().name);
          break;
        }
        case migratefs::wire::FrameType::kAck:
          (void)DecodeOpenReply(p, n);
          break;
        case migratefs::wire::FrameType::kError:
          (void)DecodeErrorPayload(p, n);
          break;
        default:
          break;
      }
    }
    if (pass == 0) r.Append(data + cut, size - cut);
  }
  // 2) The raw decoders directly on the input (no valid checksum needed).
  if (size >= migratefs::wire::kHeaderSize) (void)DecodeHeader(data);
  (void)DecodeHello(data, size);
  (void)DecodeOpenImage(data, size);
  (void)DecodeErrorPayload(data, size);
  CheckName(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
