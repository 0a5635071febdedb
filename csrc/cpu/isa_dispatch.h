// What the CPU pipelines (conv_cpu.cpp, lane_pipeline.cpp) decide the same way:
// which instruction-set build of a loop to run, and when a call is too small to
// wake the thread team.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "conv/conv_geometry.h"

namespace fftconv {
namespace cpu {

#if defined(__GNUC__) && defined(__x86_64__)
// Whether the AVX2+FMA builds run (decided once per process).
// FFTCONV_CPU_BASELINE=1 forces the baseline builds, so tests can cover them here.
inline bool cpu_has_avx2_fma() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          std::getenv("FFTCONV_CPU_BASELINE") == nullptr;
  return yes;
}
#endif

// Below this many spectrum values in a call, waking the thread team costs more
// than it saves (measured: ~200 us for a tiny problem): run the tasks serially.
constexpr int64_t kParallelMinWork = int64_t(1) << 16;

// The grain for at::parallel_for over `tasks` tasks of problem p: all of them
// in one serial range for tiny problems, else one at a time.
inline int64_t parallel_grain(const ConvGeometry2d& p, int64_t tasks) {
  const int64_t work = p.batch * (p.c_in + p.c_out) * p.n_freq;
  return work < kParallelMinWork ? std::max<int64_t>(tasks, 1) : 1;
}

}  // namespace cpu
}  // namespace fftconv
