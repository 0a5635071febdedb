// The kernel spectrum (docs/design.md §3): kept taps placed at their shifted
// slots, transformed, conjugated and scaled by 1/(n_h*n_w), so the forward
// product is a plain multiply and the inverse transform needs no roll.
#pragma once

#include <ATen/ATen.h>

#include "conv/conv_geometry.h"

namespace fftconv {

// weight: (C_out, C_in/groups, kh, kw), float or double, any device.
// Returns the spectra of output channels [out_begin, out_begin + out_count)
// as complex (out_count, C_in/groups, n_w/2+1, n_h), contiguous, column-major
// planes like the CPU's input spectra; on CUDA (out_count, C_in/groups, n_h,
// n_w/2+1), row-major like the CUDA driver's.
//
// Made a block of output channels at a time straight into the result, so a
// call needs the result plus about 256 KB of scratch on the CPU, not two or
// three spectrum-sized buffers.
at::Tensor kernel_spectrum(const at::Tensor& weight, const ConvGeometry2d& geom, int64_t out_begin, int64_t out_count);

// Every output channel's spectrum.
inline at::Tensor kernel_spectrum(const at::Tensor& weight, const ConvGeometry2d& geom) {
  return kernel_spectrum(weight, geom, 0, geom.c_out);
}

}  // namespace fftconv
