// The CPU convolution entry points with parsed arguments (the registered ops
// call the same through ConvOps<CpuDriver>, conv/driver.h); the C++ tests call these.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "conv/arguments.h"

namespace fftconv {

at::Tensor conv2d_forward_cpu(const at::Tensor& input, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias, const ConvArgs& a);
at::Tensor conv2d_grad_input_cpu(const at::Tensor& grad_output, const at::Tensor& weight,
                                 at::IntArrayRef input_size, const ConvArgs& a);
at::Tensor conv2d_grad_weight_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                  at::IntArrayRef weight_size, const ConvArgs& a);
std::tuple<at::Tensor, at::Tensor> conv2d_backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                                       const at::Tensor& weight, const ConvArgs& a);

}  // namespace fftconv
