// Deterministic, platform-stable randomness for the simulator.
//
// Counter-based: every random quantity is a pure function of (seed, stream, a, b),
// e.g. the tenants' demand on link 17 in period 42. Nothing depends on the order
// in which the simulator asks, so lazily evaluated state (only the links that
// carry migrations are ever looked at) gives the same answers as eager state,
// and a 50,000-machine cloud costs nothing for the machines nobody touches.
// The distributions are ours (no std::*_distribution, whose output is
// implementation-defined).
#pragma once

#include <cstdint>

namespace migratefs::sim {

// Independent streams of randomness; never renumber (results would change).
enum class Stream : uint64_t {
  kHostBackground = 1,
  kTorBackground = 2,
  kHotSpotStart = 3,
  kTaskSource = 4,
  kTaskTarget = 5,
  kTaskImportant = 6,
};

// 64 well-mixed bits for (seed, stream, a, b).
uint64_t Hash(uint64_t seed, Stream stream, uint64_t a, uint64_t b);

// Uniform in [0, 1), 53 bits.
double Uniform01(uint64_t bits);

// Uniform integer in [0, n), n > 0 (multiply-shift: no modulo bias worth noting).
uint64_t UniformInt(uint64_t bits, uint64_t n);

// Standard normal from (seed, stream, a, b) by Box-Muller on two derived uniforms.
double Gaussian(uint64_t seed, Stream stream, uint64_t a, uint64_t b);

}  // namespace migratefs::sim
