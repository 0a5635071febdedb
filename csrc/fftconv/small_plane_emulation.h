// Test hooks for the fused small-plane CUDA kernel: which problems it takes
// and its phases run on the host (small_plane_emulation.cpp).
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

#include "conv_plan.h"

namespace fftconv {
namespace small_plane {

// (n_h, n_w) the kernel would transform at, or empty when it does not take the problem.
std::vector<int64_t> fused_lengths(const ConvPlan2d& p);

// The kernel's output for src (the input; the output gradient when adjoint),
// computed on the host by running its phases block by block (items in
// reverse order when `reverse`), blocks sized for shared_bytes (0: the default).
at::Tensor emulate_fused(const at::Tensor& src, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         const ConvPlan2d& plan, bool adjoint, bool reverse, int64_t shared_bytes);

}  // namespace small_plane
}  // namespace fftconv
