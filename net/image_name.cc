#include "net/image_name.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "migratefs/wire.h"

namespace migratefs::net {

namespace {
Error BadName(std::string_view name, const std::string& why) {
  std::string shown(name.substr(0, 200));
  for (char& c : shown) {
    if (c == '\0') c = '?';
  }
  return MakeError(errc::kBadName, "image name \"" + shown + "\": " + why);
}
}  // namespace

Status ValidateImageName(std::string_view name) {
  if (name.empty()) return BadName(name, "empty");
  if (name.size() > wire::kMaxNameLength) {
    return BadName(name, "longer than " + std::to_string(wire::kMaxNameLength) + " bytes");
  }
  if (name.find('\0') != std::string_view::npos) return BadName(name, "contains a NUL byte");
  if (name.front() == '/') return BadName(name, "absolute; names are relative to the served directory");
  size_t components = 0;
  size_t start = 0;
  while (true) {
    const size_t slash = name.find('/', start);
    const std::string_view comp =
        name.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (comp.empty()) return BadName(name, "empty path component");
    if (comp == ".") return BadName(name, "\".\" component");
    if (comp == "..") return BadName(name, "\"..\" component would leave the served directory");
    if (comp.size() > wire::kMaxNameComponent) {
      return BadName(name, "component longer than " + std::to_string(wire::kMaxNameComponent) + " bytes");
    }
    if (++components > wire::kMaxNameComponents) {
      return BadName(name, "more than " + std::to_string(wire::kMaxNameComponents) + " components");
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return OkStatus();
}

void SplitImageName(std::string_view name, std::string* parent, std::string* base) {
  const size_t slash = name.rfind('/');
  if (slash == std::string_view::npos) {
    *parent = ".";
    *base = std::string(name);
  } else {
    *parent = std::string(name.substr(0, slash));
    *base = std::string(name.substr(slash + 1));
  }
}

int OpenImageBeneath(int dirfd, const std::string& name) {
  struct open_how how = {};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return int(::syscall(SYS_openat2, dirfd, name.c_str(), &how, sizeof(how)));
}

}  // namespace migratefs::net
