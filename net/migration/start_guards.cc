#include "net/migration/start_guards.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstring>

#include "net/address.h"

namespace migratefs::migration {

namespace {

bool IsLoopback(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr a{};
  return inet_pton(AF_INET, host.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

bool IsAnyAddress(const std::string& host) { return host.empty() || host == "0.0.0.0" || host == "::"; }

// Numeric addresses of this host's interfaces, e.g. "10.0.0.5", "fe80::1".
bool IsInterfaceAddress(const std::string& host) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return false;
  bool found = false;
  for (ifaddrs* i = list; i != nullptr && !found; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    char text[INET6_ADDRSTRLEN] = {};
    if (i->ifa_addr->sa_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof text);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, text, sizeof text);
    } else {
      continue;
    }
    found = host == text;
  }
  freeifaddrs(list);
  return found;
}

size_t OpenDescriptors() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  size_t n = 0;
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n > 3 ? n - 3 : 0;  // ".", ".." and the directory's own descriptor
}

}  // namespace

bool IsOwnAddress(const std::string& target, const std::string& listen) {
  if (listen.empty()) return false;
  auto t = net::ParseHostPort(target);
  auto l = net::ParseHostPort(listen);
  if (!t.ok() || !l.ok() || t.value().port != l.value().port) return false;
  const std::string& th = t.value().host;
  const std::string& lh = l.value().host;
  if (th == lh || IsLoopback(th)) return true;
  return IsAnyAddress(lh) && (IsAnyAddress(th) || IsInterfaceAddress(th));
}

Status CheckDescriptorRoom() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return OkStatus();
  const size_t limit = rl.rlim_cur;
  const size_t reserve = std::max<size_t>(64, limit / 8);
  const size_t open = OpenDescriptors();
  if (open + reserve <= limit) return OkStatus();
  return MakeError(errc::kResourceExhausted,
                   "start: " + std::to_string(open) + " of " + std::to_string(limit) +
                       " file descriptors are in use; the last " + std::to_string(reserve) +
                       " are kept for the VMs' own I/O. Cancel or release ended migrations, or raise "
                       "LimitNOFILE");
}

unsigned long RaiseDescriptorLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

}  // namespace migratefs::migration
