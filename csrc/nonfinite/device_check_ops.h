// The device checks' stages (device_checks.h) for tensors, per device: a CPU
// loop and a CUDA kernel over the same element functions.
#pragma once

#include <ATen/ATen.h>

#include "nonfinite/device_checks.h"

namespace fftconv {

// flag (an int32 tensor of one element) <- 1 when flags_element(a, b, i) for
// some i: a holds NaN or Inf (b null), or differs from *b. Contiguous
// operands of one dtype and size.
void flag_cpu(const at::Tensor& a, const at::Tensor* b, at::Tensor& flag);
void flag_cuda(const at::Tensor& a, const at::Tensor* b, at::Tensor& flag);

// When either of the two int32 flags is set, out <- the direct correlation of
// x and w (+ bias, undefined for none); otherwise nothing. Contiguous operands.
void direct_where_flagged_cpu(const at::Tensor& flags, const DirectProblem& d, const at::Tensor& x,
                              const at::Tensor& w, const at::Tensor& bias, at::Tensor& out);
void direct_where_flagged_cuda(const at::Tensor& flags, const DirectProblem& d, const at::Tensor& x,
                               const at::Tensor& w, const at::Tensor& bias, at::Tensor& out);

}  // namespace fftconv
