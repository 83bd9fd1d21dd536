#include "fs/request_id.h"

#include <pthread.h>

#include <cstddef>

namespace migratefs::fs {
namespace {

// The prefix of libfuse 3.14's struct fuse_req (lib/fuse_i.h), up to ctx.
struct Fuse314RequestPrefix {
  void* se;
  uint64_t unique;
  int ctr;
  pthread_mutex_t lock;
  fuse_ctx ctx;
};

}  // namespace

uint64_t RequestUnique(fuse_req_t req) {
  const char* base = reinterpret_cast<const char*>(req);
  const char* ctx = reinterpret_cast<const char*>(fuse_req_ctx(req));
  if (ctx - base != static_cast<std::ptrdiff_t>(offsetof(Fuse314RequestPrefix, ctx))) return 0;
  return reinterpret_cast<const Fuse314RequestPrefix*>(base)->unique;
}

}  // namespace migratefs::fs
