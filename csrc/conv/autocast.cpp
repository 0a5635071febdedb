// torch.autocast for the convolution ops, as PyTorch's own convolutions have it:
// inside an autocast region the floating operands (not float64) are cast to
// the region's lower-precision dtype, as aten::conv2d's are, and the op runs
// below autocast; it computes float16/bfloat16 in float32 (ConvOps,
// conv/driver.h) and returns the lower-precision dtype. Registered for the
// autocast dispatch keys, so it holds under torch.compile and torch.export.
// The gradient ops need none: autograd calls them with the forward's dtypes.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/library.h>

#include <optional>

namespace fftconv {
namespace {

template <c10::DeviceType D>
at::Tensor conv2d_forward_autocast(const at::Tensor& input, const at::Tensor& weight,
                                   const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                   at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, bool circular) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fftconv::conv2d_forward", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                               at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t, bool)>();
  const at::ScalarType dtype = at::autocast::get_autocast_dtype(D);
  return op.call(at::autocast::cached_cast(dtype, input, D), at::autocast::cached_cast(dtype, weight, D),
                 at::autocast::cached_cast(dtype, bias, D), stride, padding, dilation, groups, circular);
}

template <c10::DeviceType D>
at::Tensor long_conv1d_autocast(const at::Tensor& u, const at::Tensor& k, const std::optional<at::Tensor>& D_skip,
                                bool causal) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fftconv::long_conv1d", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                               bool)>();
  const at::ScalarType dtype = at::autocast::get_autocast_dtype(D);
  return op.call(at::autocast::cached_cast(dtype, u, D), at::autocast::cached_cast(dtype, k, D),
                 at::autocast::cached_cast(dtype, D_skip, D), causal);
}

}  // namespace

TORCH_LIBRARY_IMPL(fftconv, AutocastCPU, m) {
  m.impl("conv2d_forward", &conv2d_forward_autocast<c10::DeviceType::CPU>);
  m.impl("long_conv1d", &long_conv1d_autocast<c10::DeviceType::CPU>);
}

TORCH_LIBRARY_IMPL(fftconv, AutocastCUDA, m) {
  m.impl("conv2d_forward", &conv2d_forward_autocast<c10::DeviceType::CUDA>);
  m.impl("long_conv1d", &long_conv1d_autocast<c10::DeviceType::CUDA>);
}

}  // namespace fftconv
