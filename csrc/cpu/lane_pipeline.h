// The CPU pipeline for depthwise correlations of small planes, a group of
// planes at a time in the lanes of a vector (lane_fft.h): pad-load, real
// transforms along W, transforms along H, spectral multiply, inverse, crop +
// bias, all on one group's spectra in cache, with no call into an FFT library
// and no layout moves between the stages. On the benchmark's layers (7x7 to
// 64x64 planes) it measured 1.11-1.65x faster than the chunked ATen/MKL
// pipeline (conv_cpu.cpp), which it replaces where it applies. The backward
// (lane_backward: both gradients, or the weight gradient alone) measured
// 1.3-2.4x faster than the chunked joint backward on the same layers.
#pragma once

#include <ATen/ATen.h>

#include "conv/conv_geometry.h"
#include "conv/spectrum_cache.h"

namespace fftconv {
namespace cpu {

// Runs the forward (adjoint == false: src = input, dst = output) or the input
// gradient (adjoint == true: src = grad_output, dst = grad_input) and returns
// true, or returns false without touching anything when the problem is not
// one it takes: depthwise (one input and one output plane per group), stride
// 1, transform lengths up to lanes::kMaxLength with factors 2, 3, 5, 7 (n_w
// even), the kernel spectrum cached (not made per block).
template <typename T>
bool lane_pipeline(const at::Tensor& src, const KernelSpectrumSource& spectra, const T* bias, at::Tensor& dst,
                   const ConvGeometry2d& p, bool adjoint);

// Whether lane_pipeline takes problems of this geometry (with a cached spectrum).
bool lane_pipeline_applies(const ConvGeometry2d& p);

// How it gathers a group's kernel spectra for this geometry: 1 all at once (small
// planes), 2 a column at a time; 0 when it does not take the problem.
int lane_pipeline_mode(const ConvGeometry2d& p);

// Both gradients (gin non-null) or the weight gradient alone (gin null) of a
// depthwise problem the lane pipeline's shapes allow, a group of channels per
// task over the whole batch; returns false without touching anything when it
// does not take the problem (too few channel groups to share among the
// threads, planes whose three spectra per thread outgrow an L2, the kernel
// spectrum made per block). gw must be zero (taps outside the kept window
// are not written).
template <typename T>
bool lane_backward(const at::Tensor& input, const at::Tensor& grad_out, const KernelSpectrumSource* spectra,
                   at::Tensor* gin, at::Tensor& gw, const ConvGeometry2d& p);

// Whether lane_backward takes this geometry with float32 (lanes_per_vector 8) or
// float64 (4) operands.
bool lane_backward_applies(const ConvGeometry2d& p, bool input_grad, int64_t lanes_per_vector);

// 0: lane_backward declines a float32 (float64 when `float64`) problem; 1, 2:
// takes it, gathering kernel spectra whole or by column (a test hook).
int lane_backward_mode(const ConvGeometry2d& p, bool input_grad, bool float64);

}  // namespace cpu
}  // namespace fftconv
