// XXH3 for the checksums and block hashes. On x86 the library's runtime dispatcher
// picks SSE2, AVX2 or AVX-512 (about 3x faster than the SSE2 default on a 512 KiB
// block); the results are identical on every path and platform.
#pragma once

#include <xxhash.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xxh_x86dispatch.h>  // maps XXH3_64bits* to XXH3_64bits*_dispatch
#endif
