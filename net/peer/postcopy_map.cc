#include "net/peer/postcopy_map.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "net/peer/receive_file.h"

namespace migratefs::net {

namespace {
constexpr uint64_t kMagic = 0x70616d79706f6370ull;  // "pcopymap", little-endian
constexpr uint32_t kVersion = 1;
constexpr size_t kIdentityMax = 64;

Error PathError(const std::string& what, const std::string& path, int err) {
  return MakeError(errc::kIo, what + " " + path + ": " + ErrnoText(err));
}

// mkdir -p of an absolute or relative path.
int MakeDirs(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); pos++) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    const std::string prefix = dir.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) return errno;
  }
  return 0;
}
}  // namespace

struct PostcopyMap::Header {
  uint64_t magic;
  uint32_t version;
  uint32_t block_size;
  uint64_t dev;
  uint64_t ino;
  uint64_t size;
  uint64_t timeout_ms;
  uint64_t blocks;
  uint32_t identity_len;
  char identity[kIdentityMax];
  uint32_t reserved;
};

std::string PostcopyMap::PathFor(const std::string& dir, dev_t dev, ino_t ino) {
  return dir + "/postcopy-" + std::to_string(uint64_t(dev)) + "-" + std::to_string(uint64_t(ino)) + ".map";
}

Result<std::unique_ptr<PostcopyMap>> PostcopyMap::Create(const std::string& dir, dev_t dev, ino_t ino,
                                                         const std::string& identity, uint64_t size,
                                                         uint32_t block_size, std::chrono::milliseconds timeout,
                                                         const std::string& remote) {
  const std::string path = PathFor(dir, dev, ino);
  // An older map of this copy must never outlive a failed create: the mark that follows
  // would make a restarted daemon trust it.
  ::unlink(path.c_str());
  if (identity.size() > kIdentityMax) return MakeError(errc::kInvalidArgument, "image identity too long for " + path);
  if (int err = MakeDirs(dir)) return PathError("cannot create", dir, err);
  Header h{};
  h.magic = kMagic;
  h.version = kVersion;
  h.block_size = block_size;
  h.dev = dev;
  h.ino = ino;
  h.size = size;
  h.timeout_ms = uint64_t(timeout.count());
  h.blocks = (size + block_size - 1) / block_size;
  h.identity_len = uint32_t(identity.size());
  std::memcpy(h.identity, identity.data(), identity.size());
  std::string body(sizeof(Header) + h.blocks, '\0');
  std::memcpy(body.data(), &h, sizeof h);
  for (uint64_t b = 0; b < h.blocks && b / 8 < remote.size(); b++) {
    if ((uint8_t(remote[b / 8]) >> (b % 8)) & 1) body[sizeof(Header) + b] = 1;
  }
  // Written whole under a temporary name, then renamed: a crash leaves the old state
  // (no map) or the whole new one.
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return PathError("cannot create", tmp, errno);
  size_t done = 0;
  while (done < body.size()) {
    ssize_t n = ::pwrite(fd, body.data() + done, body.size() - done, off_t(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      ::close(fd);
      ::unlink(tmp.c_str());
      return PathError("cannot write", tmp, err);
    }
    done += size_t(n);
  }
  void* base = ::mmap(nullptr, body.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int map_err = errno;
  ::close(fd);
  if (base == MAP_FAILED) {
    ::unlink(tmp.c_str());
    return PathError("cannot map", tmp, map_err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::munmap(base, body.size());
    ::unlink(tmp.c_str());
    return PathError("cannot rename to", path, err);
  }
  return std::unique_ptr<PostcopyMap>(new PostcopyMap(path, base, body.size()));
}

Result<std::unique_ptr<PostcopyMap>> PostcopyMap::Open(const std::string& dir, dev_t dev, ino_t ino,
                                                       const std::string& identity) {
  const std::string path = PathFor(dir, dev, ino);
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return MakeError(errc::kNotFound, "no map of the remote blocks at " + path);
    return PathError("cannot open", path, errno);
  }
  struct stat st {};
  Header h{};
  const bool read_ok = ::fstat(fd, &st) == 0 && ::pread(fd, &h, sizeof h, 0) == ssize_t(sizeof h);
  auto damaged = [&](const std::string& why) {
    ::close(fd);
    return MakeError(errc::kInvalidArgument, path + " " + why);
  };
  if (!read_ok || h.magic != kMagic || h.version != kVersion) return damaged("is not a postcopy map (damaged?)");
  if (h.block_size == 0 || h.blocks != (h.size + h.block_size - 1) / h.block_size ||
      uint64_t(st.st_size) != sizeof(Header) + h.blocks || h.identity_len > kIdentityMax) {
    return damaged("is damaged (its size does not match its header)");
  }
  if (h.dev != uint64_t(dev) || h.ino != uint64_t(ino) || std::string(h.identity, h.identity_len) != identity) {
    return damaged("belongs to another file (identity " + std::string(h.identity, h.identity_len) + ", not " +
                   identity + ")");
  }
  void* base = ::mmap(nullptr, size_t(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int map_err = errno;
  ::close(fd);
  if (base == MAP_FAILED) return PathError("cannot map", path, map_err);
  return std::unique_ptr<PostcopyMap>(new PostcopyMap(path, base, size_t(st.st_size)));
}

PostcopyMap::PostcopyMap(std::string path, void* base, size_t len)
    : path_(std::move(path)), base_(base), len_(len), blocks_(header()->blocks) {}

PostcopyMap::~PostcopyMap() { ::munmap(base_, len_); }

PostcopyMap::Header* PostcopyMap::header() const { return static_cast<Header*>(base_); }
uint8_t* PostcopyMap::bytes() const { return static_cast<uint8_t*>(base_) + sizeof(Header); }

uint64_t PostcopyMap::size() const { return header()->size; }
uint32_t PostcopyMap::block_size() const { return header()->block_size; }
std::chrono::milliseconds PostcopyMap::timeout() const { return std::chrono::milliseconds(header()->timeout_ms); }

bool PostcopyMap::remote(uint64_t block) const {
  return block < blocks_ && std::atomic_ref<uint8_t>(bytes()[block]).load(std::memory_order_relaxed) != 0;
}

std::string PostcopyMap::RemoteBitmap() const {
  std::string bitmap((blocks_ + 7) / 8, '\0');
  for (uint64_t b = 0; b < blocks_; b++)
    if (remote(b)) bitmap[b / 8] = char(uint8_t(bitmap[b / 8]) | (1u << (b % 8)));
  return bitmap;
}

void PostcopyMap::MarkLocal(uint64_t block) {
  if (block < blocks_) std::atomic_ref<uint8_t>(bytes()[block]).store(0, std::memory_order_relaxed);
}

void PostcopyMap::Discard() { ::unlink(path_.c_str()); }

}  // namespace migratefs::net
