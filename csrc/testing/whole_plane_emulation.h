// Test hook: the CUDA whole-plane pipeline (cuda/conv_cuda.cu, run_planes_pipeline) run on
// the host with its own pointwise functions (cuda/whole_plane.h) and ATen's 2-D FFTs in place
// of cuFFT's batched 2-D plans, block by block.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "conv/conv_geometry.h"

namespace fftconv {

// The pipeline's output for src (the input; the output gradient when adjoint), in blocks of
// batch_block batch elements x group_block groups (the CUDA driver's chunks).
at::Tensor emulate_whole_plane(const at::Tensor& src, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                               const ConvGeometry2d& p, bool adjoint, int64_t batch_block, int64_t group_block);

}  // namespace fftconv
