// Test hooks for the small-plane CUDA kernel: which problems it takes
// and its phases run on the host (small_plane_emulation.cpp).
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>
#include <vector>

#include "conv/conv_geometry.h"

namespace fftconv {
namespace small_plane {

// (n_h, n_w) the kernel would transform at, or empty when it does not take the problem.
std::vector<int64_t> small_plane_lengths(const ConvGeometry2d& p);

// The kernel's output for src (the input; the output gradient when adjoint),
// computed on the host by running its phases block by block (items in
// reverse order when `reverse`), blocks sized for shared_bytes (0: the default).
// `nonfinite` (an int32 CPU tensor of one element, when given) is set to 1 as
// the kernel sets its device flag: when src holds NaN or Inf.
at::Tensor emulate_small_plane(const at::Tensor& src, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         const ConvGeometry2d& geom, bool adjoint, bool reverse, int64_t shared_bytes,
                         const std::optional<at::Tensor>& nonfinite = std::nullopt);

// Both gradients (input_grad; else an undefined first tensor) of the small-plane
// backward (small_plane/backward.h), on the host; blocks sized for
// shared_bytes (0: the default) and about target_blocks of them.
std::tuple<at::Tensor, at::Tensor> emulate_small_plane_backward(const at::Tensor& grad_out, const at::Tensor& input,
                                                          const at::Tensor& weight, const ConvGeometry2d& geom,
                                                          bool input_grad, bool reverse, int64_t shared_bytes,
                                                          int64_t target_blocks);

}  // namespace small_plane
}  // namespace fftconv
