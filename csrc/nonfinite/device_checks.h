// Checks done on the device instead of the host, so that a forward call on an
// asynchronous device (CUDA) never waits for it (conv_entry.h, "device
// checks"). A call whose kernel spectrum is cached for this very weight
// tensor at its current version:
//
//   1. sets a flag on the device when the input holds NaN or Inf, or when the
//      weight's values differ from those the spectrum was made from (an edit
//      through `.data` bumps no version counter);
//   2. runs the FFT pipeline as usual;
//   3. runs a direct correlation over the whole output where the flag is set
//      (each thread reads the flag first and returns when it is clear).
//
// So NaN and Inf land where a direct convolution puts them and a silently
// edited weight is used as it is, without the host ever reading the flag. The
// functions below are written once for the CPU loops (which the tests run) and
// the CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/geometry.h"

namespace fftconv {

template <typename T>
FFTCONV_HD bool is_finite(T v) {
#ifdef __CUDA_ARCH__
  return isfinite(v);
#else
  return std::isfinite(v);
#endif
}

// Whether element i of `a` is non-finite, or differs from element i of `b`
// when `b` is given (the stored copy of a weight, compared by value; only finite weights are
// ever stored).
template <typename T>
FFTCONV_HD bool flags_element(const T* a, const T* b, int64_t i) {
  const T v = a[i];
  return b != nullptr ? !(v == b[i]) : !is_finite(v);
}

// A 2-D grouped correlation as F.conv2d defines it (no torch types, for device code).
struct DirectProblem {
  int64_t batch, c_in, c_out, groups;
  int64_t in_h, in_w, out_h, out_w, kernel_h, kernel_w;
  int64_t stride_h, stride_w, dilation_h, dilation_w;
  int64_t pad_top, pad_left;
  bool circular;

  FFTCONV_HD int64_t outputs() const { return batch * c_out * out_h * out_w; }
};

// Input index of output o, tap t along one axis; -1 when it falls on zero padding.
FFTCONV_HD int64_t direct_source(int64_t o, int64_t t, int64_t stride, int64_t dilation, int64_t pad,
                                 int64_t len, bool circular) {
  const int64_t i = o * stride + t * dilation - pad;
  if (circular) return wrap_index(i, len);
  return i >= 0 && i < len ? i : -1;
}

// Output element `index` (flat, (batch, c_out, out_h, out_w)) of the direct
// correlation, bias included, with zero padding multiplied as F.conv2d on the CPU does
// (a non-finite tap on padding gives NaN).
template <typename T>
FFTCONV_HD T direct_output(const DirectProblem& d, const T* x, const T* w, const T* bias, int64_t index) {
  const int64_t j = index % d.out_w;
  int64_t rest = index / d.out_w;
  const int64_t i = rest % d.out_h;
  rest /= d.out_h;
  const int64_t oc = rest % d.c_out, b = rest / d.c_out;
  const int64_t cpg = d.c_in / d.groups, opg = d.c_out / d.groups, g = oc / opg;
  T acc = T(0);
  for (int64_t cl = 0; cl < cpg; ++cl) {
    const T* plane = x + ((b * d.c_in + g * cpg + cl) * d.in_h) * d.in_w;
    const T* taps = w + (oc * cpg + cl) * d.kernel_h * d.kernel_w;
    for (int64_t th = 0; th < d.kernel_h; ++th) {
      const int64_t y = direct_source(i, th, d.stride_h, d.dilation_h, d.pad_top, d.in_h, d.circular);
      for (int64_t tw = 0; tw < d.kernel_w; ++tw) {
        const int64_t xx = y < 0 ? -1 : direct_source(j, tw, d.stride_w, d.dilation_w, d.pad_left, d.in_w,
                                                      d.circular);
        // a tap on zero padding multiplies a zero, as F.conv2d does: nothing for a finite weight,
        // NaN for a non-finite one (a new weight version flagged on the device, or a silent edit)
        acc += taps[th * d.kernel_w + tw] * (xx >= 0 ? plane[y * d.in_w + xx] : T(0));
      }
    }
  }
  return bias != nullptr ? acc + bias[oc] : acc;
}

}  // namespace fftconv
