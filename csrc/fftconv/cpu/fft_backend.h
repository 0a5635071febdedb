// The CPU transforms: ATen's FFT (MKL on x86 builds of torch, pocketfft
// elsewhere), called on one cache-sized chunk of planes at a time. Unnormalised
// in both directions; the 1/N lives in the kernel spectrum.
#pragma once

#include <ATen/ATen.h>

namespace fftconv {
namespace cpu {

// (P, R, n_w) real -> (P, R, n_w/2+1) complex, along the last axis.
inline at::Tensor rfft_rows(const at::Tensor& real) {
  return at::_fft_r2c(real, {2}, /*normalization=*/0, /*onesided=*/true);
}

// (P, F, n_h) complex (column-major planes), transform along the last axis.
inline at::Tensor fft_columns(const at::Tensor& spec, bool forward) {
  return at::_fft_c2c(spec, {2}, /*normalization=*/0, forward);
}

// (P, R, F) complex -> (P, R, n_w) real, along the last axis.
inline at::Tensor irfft_rows(const at::Tensor& spec, int64_t n_w) {
  return at::_fft_c2r(spec, {2}, /*normalization=*/0, n_w);
}

}  // namespace cpu
}  // namespace fftconv
