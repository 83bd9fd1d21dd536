#include "broker/sim/rng.h"

#include <cmath>

namespace migratefs::sim {
namespace {

// SplitMix64's finaliser: a bijection with good avalanche, cheap.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t Hash(uint64_t seed, Stream stream, uint64_t a, uint64_t b) {
  uint64_t x = Mix(seed ^ (static_cast<uint64_t>(stream) * 0xd1b54a32d192ed03ULL));
  x = Mix(x ^ a);
  return Mix(x ^ (b * 0xa0761d6478bd642fULL));
}

double Uniform01(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

uint64_t UniformInt(uint64_t bits, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(bits) * n) >> 64);
}

double Gaussian(uint64_t seed, Stream stream, uint64_t a, uint64_t b) {
  const uint64_t h = Hash(seed, stream, a, b);
  const double u1 = 1.0 - Uniform01(h);  // (0, 1]: log() stays finite
  const double u2 = Uniform01(Mix(h));
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

}  // namespace migratefs::sim
