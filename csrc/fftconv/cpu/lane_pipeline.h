// The CPU pipeline for depthwise correlations of small planes, a group of
// planes at a time in the lanes of a vector (lane_fft.h): pad-load, real
// transforms along W, transforms along H, spectral multiply, inverse, crop +
// bias, all on one group's spectra in cache, with no call into an FFT library
// and no layout moves between the stages. On the benchmark's layers (7x7 to
// 64x64 planes) it measured 1.11-1.65x faster than the chunked ATen/MKL
// pipeline (conv_cpu.cpp), which it replaces where it applies.
#pragma once

#include <ATen/ATen.h>

#include "../conv_plan.h"
#include "../spectrum_cache.h"

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
                   const ConvPlan2d& p, bool adjoint);

// Whether lane_pipeline takes problems of this plan (with a cached spectrum).
bool lane_pipeline_applies(const ConvPlan2d& p);

// How it gathers a group's kernel spectra for this plan: 1 all at once (small
// planes), 2 a column at a time; 0 when it does not take the problem.
int lane_pipeline_mode(const ConvPlan2d& p);

}  // namespace cpu
}  // namespace fftconv
