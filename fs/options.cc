#include "fs/options.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string_view>

#include "net/socket_marking.h"

namespace migratefs::fs {
namespace {

// Generic mount(8) flags the kernel understands for a FUSE mount; passed on.
const std::set<std::string_view> kMountFlags = {"ro",   "rw",   "suid",  "nosuid",  "dev",  "nodev", "exec",
                                                "noexec", "async", "sync", "atime", "noatime", "dirsync"};

// fstab / mount(8) options that mean nothing to a FUSE daemon. mount.fuse3 drops
// some of them itself, but not all, and not every version.
const std::set<std::string_view> kIgnored = {"defaults", "auto",      "noauto",     "nofail",      "_netdev",
                                             "user",     "nouser",    "users",      "owner",       "group",
                                             "relatime", "norelatime", "strictatime", "nostrictatime", "lazytime",
                                             "nolazytime", "diratime", "nodiratime", "nonempty",   "loud",
                                             "silent",   "default_permissions"};

Error Bad(const std::string& msg) { return MakeError(errc::kInvalidArgument, msg); }

bool ParseUnsigned(const std::string& s, uint64_t max, uint64_t* out) {
  if (s.empty() || s[0] == '-') return false;
  errno = 0;
  char* end = nullptr;
  unsigned long long v = strtoull(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str()) return false;
  std::string_view suffix(end);
  uint64_t mult = 1;
  if (suffix == "k" || suffix == "K" || suffix == "KiB") {
    mult = 1ull << 10;
  } else if (suffix == "m" || suffix == "M" || suffix == "MiB") {
    mult = 1ull << 20;
  } else if (suffix == "g" || suffix == "G" || suffix == "GiB") {
    mult = 1ull << 30;
  } else if (!suffix.empty()) {
    return false;
  }
  if (v > max / mult) return false;
  *out = v * mult;
  return true;
}

// Applies one `name[=value]` from -o. Returns an error message or "".
std::string ApplyOption(const std::string& opt, CommandLine* cl) {
  MountOptions& o = cl->opts;
  size_t eq = opt.find('=');
  std::string name = opt.substr(0, eq);
  bool has_value = eq != std::string::npos;
  std::string value = has_value ? opt.substr(eq + 1) : "";

  auto need_value = [&]() -> std::string {
    return has_value && !value.empty() ? "" : "option '" + name + "' needs a value (" + name + "=...)";
  };
  auto no_value = [&]() -> std::string { return has_value ? "option '" + name + "' takes no value" : ""; };
  auto number = [&](uint64_t lo, uint64_t hi, uint64_t* out) -> std::string {
    if (auto e = need_value(); !e.empty()) return e;
    if (!ParseUnsigned(value, hi, out) || *out < lo) {
      return "option '" + name + "': '" + value + "' is not a number in " + std::to_string(lo) + ".." +
             std::to_string(hi);
    }
    return "";
  };

  if (name.empty()) return "";  // ",," or a trailing comma
  if (name == "control" || name == "listen" || name == "keyfile" || name == "metrics" || name == "fsname" ||
      name == "subtype") {
    if (auto e = need_value(); !e.empty()) return e;
    if (name == "control") o.control = value;
    if (name == "listen") o.listen = value;
    if (name == "keyfile") o.keyfile = value;
    if (name == "metrics") o.metrics = value;
    if (name == "fsname") cl->fsname = value;
    return "";  // subtype: always "migratefs"
  }
  if (name == "state_dir") {
    if (auto e = need_value(); !e.empty()) return e;
    if (value.front() != '/') return "option 'state_dir': '" + value + "' is not an absolute path";
    o.state_dir = value;
    return "";
  }
  if (name == "block_size") {
    uint64_t v;
    if (auto e = number(1, 1ull << 40, &v); !e.empty()) return e;
    if (v < 4096 || v > (64ull << 20) || (v & (v - 1)) != 0) {
      return "option 'block_size': " + value + " is not a power of two between 4096 (4K) and 67108864 (64M)";
    }
    o.block_size = v;
    return "";
  }
  if (name == "dscp") {
    if (auto e = need_value(); !e.empty()) return e;
    auto v = net::ParseDscp(value);
    if (!v.ok()) return "option 'dscp': " + v.error().message;
    o.dscp = v.value();
    return "";
  }
  if (name == "so_priority") {
    if (auto e = need_value(); !e.empty()) return e;
    auto v = net::ParseSocketPriority(value);
    if (!v.ok()) return "option 'so_priority': " + v.error().message;
    o.so_priority = v.value();
    return "";
  }
  if (name == "mirror_coalesce_us") {
    uint64_t v;
    if (auto e = number(0, 100000, &v); !e.empty()) return e;
    o.mirror_coalesce_us = static_cast<unsigned>(v);
    return "";
  }
  if (name == "mirror_batch_after") {
    uint64_t v;
    if (auto e = number(0, 1024, &v); !e.empty()) return e;
    o.mirror_batch_after = static_cast<unsigned>(v);
    return "";
  }
  if (name == "mirror_batch_wait_us") {
    uint64_t v;
    if (auto e = number(1, 100000, &v); !e.empty()) return e;
    o.mirror_batch_wait_us = static_cast<unsigned>(v);
    return "";
  }
  if (name == "senders") {
    uint64_t v;
    if (auto e = number(1, 64, &v); !e.empty()) return e;
    o.senders = static_cast<unsigned>(v);
    return "";
  }
  if (name == "max_threads") {
    uint64_t v;
    if (auto e = number(1, 4096, &v); !e.empty()) return e;
    o.max_threads = static_cast<unsigned>(v);
    return "";
  }
  if (name == "max_background") {
    uint64_t v;
    if (auto e = number(1, 65535, &v); !e.empty()) return e;
    o.max_background = static_cast<unsigned>(v);
    return "";
  }
  if (name == "read_ahead_kb") {
    uint64_t v;
    if (auto e = number(0, 1 << 20, &v); !e.empty()) return e;
    cl->read_ahead_kb = static_cast<unsigned>(v);
    return "";
  }
  if (name == "dirty_max_mb") {
    uint64_t v;
    if (auto e = number(0, 1 << 20, &v); !e.empty()) return e;
    cl->dirty_max_mb = static_cast<unsigned>(v);
    return "";
  }
  if (name == "pidfile") {
    if (auto e = need_value(); !e.empty()) return e;
    cl->pidfile = value;
    return "";
  }
  if (name == "timeout") {
    if (auto e = need_value(); !e.empty()) return e;
    char* end = nullptr;
    double t = strtod(value.c_str(), &end);
    if (*end != '\0' || !(t >= 0) || t > 86400 * 365) return "option 'timeout': '" + value + "' is not seconds >= 0";
    cl->timeout = t;
    return "";
  }
  if (name == "insecure" || name == "allow_other" || name == "writeback" || name == "nowriteback" ||
      name == "debug" || name == "splice" || name == "nosplice" || name == "supervise" || name == "nosupervise" ||
      name == "xattr" || name == "noxattr" || name == "killpriv_v2" || name == "nokillpriv_v2" ||
      name == "write_behind" || name == "nowrite_behind") {
    if (name == "splice" || name == "nosplice") cl->splice_read = name == "splice";
    if (name == "killpriv_v2" || name == "nokillpriv_v2") cl->killpriv_v2 = name == "killpriv_v2";
    if (name == "supervise" || name == "nosupervise") cl->supervise = name == "supervise";
    if (auto e = no_value(); !e.empty()) return e;
    if (name == "insecure") o.insecure = true;
    if (name == "allow_other") o.allow_other = true;
    if (name == "writeback") o.writeback_cache = true;
    if (name == "nowriteback") o.writeback_cache = false;
    if (name == "debug") o.debug = true;
    if (name == "xattr" || name == "noxattr") o.xattr = name == "xattr";
    if (name == "write_behind" || name == "nowrite_behind") o.write_behind = name == "write_behind";
    return "";
  }
  if (kMountFlags.count(name)) {
    if (auto e = no_value(); !e.empty()) return e;
    cl->mount_flags.push_back(name);
    return "";
  }
  if (kIgnored.count(name) || name.rfind("x-", 0) == 0 || name == "comment") return "";
  return "unknown mount option '" + opt + "' (see migratefs --help)";
}

// Splits an -o argument at commas; "\," is a literal comma (as in libfuse).
std::vector<std::string> SplitOptions(std::string_view s) {
  std::vector<std::string> out(1);
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      out.back() += s[++i];
    } else if (s[i] == ',') {
      out.emplace_back();
    } else {
      out.back() += s[i];
    }
  }
  return out;
}

}  // namespace

Result<CommandLine> ParseCommandLine(int argc, const char* const* argv) {
  CommandLine cl;
  std::vector<std::string> positional;
  bool options_done = false;
  for (int i = 1; i < argc; i++) {
    std::string_view a = argv[i];
    if (options_done || a.empty() || a[0] != '-' || a == "-") {
      positional.emplace_back(a);
      continue;
    }
    if (a == "--") {
      options_done = true;
    } else if (a == "-h" || a == "--help") {
      cl.help = true;
    } else if (a == "-V" || a == "--version") {
      cl.version = true;
    } else if (a == "--upgrade") {
      if (++i >= argc) return Bad("option '--upgrade' needs the mount point (migratefs --upgrade MNT)");
      cl.upgrade_mountpoint = argv[i];
    } else if (a.rfind("--resume-supervisor=", 0) == 0) {
      // STATE_FD[,REPLY_FD]
      std::string v(a.substr(strlen("--resume-supervisor=")));
      char* end = nullptr;
      long fd = strtol(v.c_str(), &end, 10);
      long reply = -1;
      if (*end == ',') reply = strtol(end + 1, &end, 10);
      if (*end != '\0' || fd < 3 || reply < -1) return Bad("bad --resume-supervisor value '" + v + "'");
      cl.resume_state_fd = static_cast<int>(fd);
      cl.resume_reply_fd = static_cast<int>(reply);
    } else if (a == "-f") {
      cl.opts.foreground = true;
    } else if (a == "-d") {
      cl.opts.debug = true;
    } else if (a.rfind("-o", 0) == 0) {
      std::string_view list = a.substr(2);
      if (list.empty()) {
        if (++i >= argc) return Bad("option '-o' needs an argument (-o opt[,opt...])");
        list = argv[i];
      }
      for (const std::string& opt : SplitOptions(list)) {
        if (std::string err = ApplyOption(opt, &cl); !err.empty()) return Bad(err);
      }
    } else {
      return Bad("unknown command-line option '" + std::string(a) + "' (see migratefs --help)");
    }
  }
  if (cl.help || cl.version) return cl;
  if (!cl.upgrade_mountpoint.empty()) {
    if (!positional.empty()) return Bad("--upgrade takes only the mount point (migratefs --upgrade MNT)");
    return cl;
  }
  if (positional.size() != 2) {
    return Bad(positional.size() < 2 ? "missing SRC or MNT (usage: migratefs SRC MNT [-o opt,...])"
                                     : "too many arguments: '" + positional[2] + "' (usage: migratefs SRC MNT [-o opt,...])");
  }
  cl.opts.source = positional[0];
  cl.opts.mountpoint = positional[1];
  if (cl.opts.debug) cl.opts.foreground = true;
  if (!cl.opts.listen.empty() && cl.opts.keyfile.empty() && !cl.opts.insecure) {
    return Bad("listen=" + cl.opts.listen +
               " needs keyfile=PATH (the pre-shared key peers must prove); add -o insecure to accept peers "
               "without authentication");
  }
  return cl;
}

std::string UsageText() {
  return R"(usage: migratefs SRC MNT [-f] [-d] [-o opt[,opt...]]

Mirrors the directory SRC (the VM disk images) at MNT through FUSE. MNT may be SRC
itself. Runs in the background unless -f or -d is given. Unmount with
`fusermount3 -u MNT` (or umount MNT as root).

  -f                  stay in the foreground, log to stderr
  -d, -o debug        foreground, log every FUSE request
  -h, --help          this text
  -V, --version       print the version
  --upgrade MNT       hand the running mount MNT to the migratefs binary now on
                      disk, without unmounting (the VMs see a pause); waits until
                      the new worker serves. SIGHUP to the supervisor does the same
  -o opt,...          mount options (also the 4th field of /etc/fstab):

migration service:
  control=PATH        UNIX socket (mode 0600) for JSON-lines control requests
  metrics=HOST:PORT   read-only Prometheus metrics (GET /metrics)
  listen=HOST:PORT    accept migrating images from peers on this TCP address
  keyfile=PATH        pre-shared key that peers must prove (required with listen=)
  insecure            allow listen= without keyfile= (testing only)
  state_dir=PATH      where maps of copies in postcopy are kept, so that a
                      restarted daemon takes them over (default /run/migratefs;
                      keep it on a tmpfs: the maps are only valid until a reboot)
  block_size=BYTES    dirty-tracking block, a power of two from 4K to 64M
                      (suffixes K, M; default 512K)
  dscp=NAME|N         DSCP of migration traffic: CS0..CS7, AF11..AF43, EF, DF,
                      LE, VA or 0..63 (outgoing migrations, unless a start
                      overrides it, and the replies on accepted peer connections)
  so_priority=N       socket priority (skb->priority) of the same connections:
                      0..6 (TC_PRIO_*), or an htb classid such as 0x10010 (1:10)
  mirror_coalesce_us=N  an asynchronous mirror's writes wait up to N µs for
                      others to share one send (default 1000; 0..100000, 0 = off)
  mirror_batch_after=N  a synchronous mirror's write queued while N are unanswered
                      waits for their replies to share one send (default 4; 0..1024,
                      0 = each at once)
  mirror_batch_wait_us=N  the longest such a write waits when no reply comes
                      first (default 200; 1..100000)
  senders=N           blocks a migration reads and queues at once in bulk copy and
                      dirty iteration, one thread each (default 8; 1..64)

FUSE:
  allow_other         let users other than root use the mount (permissions are
                      always checked against the files' owner and mode)
  writeback           kernel writeback cache for buffered writes (default)
  nowriteback         send every buffered write to the daemon as it happens
  write_behind / nowrite_behind
                      start writing a large buffered WRITE's range of the backing
                      file to disk at once, so fsync waits less (default write_behind)
  noxattr             no extended attributes through the mount (EOPNOTSUPP):
                      the kernel then stops asking for security.capability
                      before every write(2), a round trip each (default xattr)
  max_threads=N       FUSE worker threads (default 32)
  max_background=N    asynchronous requests in flight in the kernel (default 64)
  splice / nosplice   take large WRITE payloads from the kernel through a pipe
                      (default splice: one copy fewer per write)
  killpriv_v2 / nokillpriv_v2
                      the daemon clears set-user/group-ID bits on writes by
                      unprivileged callers, so the kernel stops asking for
                      security.capability before every write (default killpriv_v2)
  timeout=SECS        attribute and entry cache time (default 1)
  read_ahead_kb=N     kernel read-ahead for the mount (default 1024; 0 = kernel's)
  dirty_max_mb=N      dirty page cache the kernel may hold for the mount before
                      it throttles writers (default 1024; 0 = the kernel's 1 %)
  fsname=NAME         source name shown in /proc/mounts (default SRC)

daemon:
  pidfile=PATH        write the PID of the worker (the process that serves the
                      mount, the one a crash would take) to PATH
  nosupervise         one process only: no supervisor restarts a crashed worker,
                      and the mount dies with the daemon (default: supervised)

  Also accepted: ro, rw, nosuid, suid, nodev, dev, noexec, exec, noatime, atime,
  sync, async, dirsync (passed to the kernel), and defaults, auto, noauto, nofail,
  _netdev, user, users, relatime, x-*, comment=... (fstab-only; ignored).

/etc/fstab:
  /var/lib/images  /var/lib/images  fuse.migratefs  control=/run/migratefs.sock,allow_other,nofail  0 0
)";
}

}  // namespace migratefs::fs
