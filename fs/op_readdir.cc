#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "fs/dir.h"
#include "fs/fs.h"
#include "fs/ops.h"

namespace migratefs::fs {
namespace {

Dir& DirOf(fuse_req_t req, fuse_file_info* fi) { return Fs::Of(req).handles().DirAt(fi->fh); }

bool IsDotOrDotDot(const char* n) { return n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')); }

// readdirplus hands out entries the kernel will count like lookups: an entry that
// does not fit the buffer must be un-counted again.
void Fill(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  Fs& fs = Fs::Of(req);
  Inode& parent = InodeOf(req, ino);
  Dir& d = DirOf(req, fi);
  if (off != d.offset) {
    seekdir(d.dp, off);
    d.entry = nullptr;
    d.offset = off;
  }
  std::unique_ptr<char[]> buf(new char[size]);
  size_t used = 0;
  int err = 0;
  for (;;) {
    if (d.entry == nullptr) {
      errno = 0;
      d.entry = readdir(d.dp);
      if (d.entry == nullptr) {
        err = errno;
        break;
      }
    }
    const char* name = d.entry->d_name;
    off_t next = d.entry->d_off;
    size_t n;
    if (plus) {
      fuse_entry_param e{};
      if (IsDotOrDotDot(name)) {
        e.attr.st_ino = d.entry->d_ino;
        e.attr.st_mode = d.entry->d_type << 12;
      } else if (int lerr = fs.inodes().Lookup(parent, name, &e)) {
        if (lerr != ENOENT) {  // ENOENT: removed since readdir saw it; skip
          err = lerr;
          break;
        }
        d.entry = nullptr;
        d.offset = next;
        continue;
      }
      n = fuse_add_direntry_plus(req, buf.get() + used, size - used, name, &e, next);
      if (n > size - used) {
        if (e.ino != 0) fs.inodes().Forget(e.ino, 1);
        break;
      }
    } else {
      struct stat st {};
      st.st_ino = d.entry->d_ino;
      st.st_mode = d.entry->d_type << 12;
      n = fuse_add_direntry(req, buf.get() + used, size - used, name, &st, next);
      if (n > size - used) break;
    }
    used += n;
    d.entry = nullptr;
    d.offset = next;
  }
  // An error after some entries is reported on the next call, like getdents(2).
  if (err != 0 && used == 0) return ReplyErr(req, err);
  fuse_reply_buf(req, buf.get(), used);
}

}  // namespace

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  int fd = openat(InodeOf(req, ino).fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ReplyErr(req, errno);
  DIR* dp = fdopendir(fd);
  if (dp == nullptr) {
    int err = errno;
    close(fd);
    return ReplyErr(req, err);
  }
  auto* d = new Dir(dp);
  int64_t fh = Fs::Of(req).handles().Add(d);
  if (fh < 0) {
    delete d;
    return ReplyErr(req, static_cast<int>(-fh));
  }
  fi->fh = static_cast<uint64_t>(fh);
  if (fuse_reply_open(req, fi) != 0) Fs::Of(req).handles().Remove(fi->fh);
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Fill(req, ino, size, off, fi, false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Fill(req, ino, size, off, fi, true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Fs::Of(req).handles().Remove(fi->fh);
  ReplyErr(req, 0);
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  int fd = dirfd(DirOf(req, fi).dp);
  ReplyErr(req, (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? errno : 0);
}

}  // namespace migratefs::fs
