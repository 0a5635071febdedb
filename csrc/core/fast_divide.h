// Division by a divisor known only at run time as a multiply-high, an add and
// a shift (Granlund & Montgomery, "Division by invariant integers using
// multiplication", 1994). The small-plane kernels split every element's
// item number into plane, row and column, and on a GPU an integer division by
// a run-time value is a sequence of some twenty instructions: as many as the
// rest of a load or store.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "core/geometry.h"

namespace fftconv {

struct FastDivider {
  uint32_t divisor = 1, multiplier = 1, shift = 0;

  FastDivider() = default;
  // 1 <= d < 2^31 (host only: made once per launch); anything else throws, as a
  // divisor of zero would otherwise divide by zero right here (SIGFPE).
  explicit FastDivider(int64_t d) : divisor(static_cast<uint32_t>(d)) {
    if (d < 1 || d >= (int64_t(1) << 31))
      throw std::invalid_argument("fftconv: FastDivider needs a divisor in [1, 2^31), got " + std::to_string(d));
    while ((uint64_t(1) << shift) < uint64_t(d)) ++shift;
    multiplier = static_cast<uint32_t>(((uint64_t(1) << 32) * ((uint64_t(1) << shift) - uint64_t(d))) / uint64_t(d) + 1);
  }

  // n / divisor for 0 <= n < 2^31 (so that the add below cannot overflow).
  FFTCONV_HD int div(int n) const {
    const uint32_t u = static_cast<uint32_t>(n);
#ifdef __CUDA_ARCH__
    const uint32_t hi = __umulhi(u, multiplier);
#else
    const uint32_t hi = static_cast<uint32_t>((uint64_t(u) * multiplier) >> 32);
#endif
    return static_cast<int>((hi + u) >> shift);
  }
  // n = q * divisor + r, 0 <= r < divisor.
  FFTCONV_HD void divmod(int n, int& q, int& r) const {
    q = div(n);
    r = n - q * static_cast<int>(divisor);
  }
};

// The divisions that split an item number of a plane h x w: by w (row, column),
// by h (plane, row of a per-row item) and by h * w (plane, element).
struct PlaneDividers {
  FastDivider w, h, plane;

  PlaneDividers() = default;
  PlaneDividers(int64_t height, int64_t width) : w(width), h(height), plane(height * width) {}
};

}  // namespace fftconv
