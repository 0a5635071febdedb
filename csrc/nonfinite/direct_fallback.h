// Non-finite values (docs/design.md §14: one NaN or Inf spreads to every output of its
// plane through an FFT). When an operand holds NaN or Inf, the three ops
// compute with ATen's direct convolution instead, so NaN and Inf land exactly
// where F.conv2d puts them. The check is one sum per operand: non-finite iff
// the sum is (a sum that overflows on finite data only costs a slower path).
#pragma once

#include <ATen/ATen.h>

#include "conv/arguments.h"

namespace fftconv {

// True when every element is finite (checked through one reduction).
bool all_finite(const at::Tensor& t);
// The same for several tensors of one dtype with a single read-back (on CUDA
// each read-back waits for the device): the sum of their sums is non-finite
// iff one of them is.
bool all_finite(at::TensorList ts);

at::Tensor direct_forward(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                          const ConvArgs& a);
at::Tensor direct_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                             at::IntArrayRef input_size, const ConvArgs& a);
at::Tensor direct_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                              at::IntArrayRef weight_size, const ConvArgs& a);

}  // namespace fftconv
