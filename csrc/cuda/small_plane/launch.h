// Launcher of the small-plane kernel (../small_plane/forward.h).
#pragma once

#include <ATen/ATen.h>

#include "conv/conv_geometry.h"
#include "cuda/small_plane/backward.h"
#include "cuda/small_plane/forward.h"

namespace fftconv {
namespace small_plane {

// backends.cuda_small_plane = True turns the kernel on (settings.h). Off by default
// until it has been measured on a GPU against the cuFFT pipeline.
bool enabled();

// Runs the forward (adjoint: the input gradient) of a float32 problem the
// kernel takes (applies(p); p's lengths from pad_to_compiled_lengths), with the
// whole kernel spectrum in the CUDA layout, and returns true; false, touching
// nothing, otherwise. Sets *nonfinite (a device int, when given) if src holds
// NaN or Inf (device_checks.h).
bool run_small_plane(const at::Tensor& src, const at::Tensor& spectrum, const float* bias, at::Tensor& dst,
               const ConvGeometry2d& p, bool adjoint, int* nonfinite = nullptr);

// Both gradients (input gradient when `gin` is non-null) with the small-plane
// backward (../small_plane/backward.h) of a float32 problem it takes; the
// weight gradient must be zero. `spectrum` is needed only for the input
// gradient. Returns false, touching nothing, when it does not take it.
bool run_joint_backward(const at::Tensor& input, const at::Tensor& grad_out, const at::Tensor* spectrum,
                        at::Tensor* gin, at::Tensor& grad_weight, const ConvGeometry2d& p);

// The kernels for lengths (NH, NW) on the current stream; instantiated for
// the compiled lengths in small_plane_h*.cu.
template <int NH, int NW>
void launch_small_plane(const Geometry& g, const float* src, const Complex<float>* spectrum, const float* bias,
                  float* dst, int* nonfinite);
template <int NH, int NW>
void launch_joint_backward(const BackwardGeometry& g, const float* x, const float* grad_out,
                           const Complex<float>* spectrum, float* gin, float* grad_weight, Complex<float>* partial);

}  // namespace small_plane
}  // namespace fftconv
