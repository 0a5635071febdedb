// The entry points of the three convolution ops, written once for both
// devices: operand checks, degenerate shapes, the non-finite fallback and the
// kernel spectrum; a device driver supplies only the pipelines.
//
// A Driver provides:
//   static constexpr at::DeviceType device_type;
//   struct Guard { explicit Guard(at::Device); };            // device guard (no-op on CPU)
//   template <typename T> static bool pipeline(src, spectra, const T* bias, dst, geometry, adjoint,
//                                              int* nonfinite = nullptr);
//     (returns true when it set the device int *nonfinite itself if src holds NaN/Inf)
//   template <typename T> static void grad_weight(input, grad_output, grad_weight, geometry);
//   template <typename T> static bool backward(input, grad_output, spectra, grad_input, grad_weight, geometry);
//     (both gradients from one pass over the output gradient's spectra; false
//      when the driver has no such pass or it would not pay, see backward_entry)
//   static ConvGeometry2d geometry_for(geometry, dtype);
//     (the geometry the pipelines run: as computed, or with the transform lengths
//      a driver's kernel is compiled for; made before the kernel spectrum)
//   static bool device_checks();   (whether this call checks on the device, settings.h)
//   static void flag(a, b, flag);   (flag <- 1 where flags_element(a, b, i), device_checks.h)
//   static void direct_where_flagged(flags, problem, x, w, bias, out);
//     (out <- the direct correlation when either of the two flags is set, nothing otherwise;
//      both on the device's stream, the host never reads the flag)
// where spectra is the call's KernelSpectrumSource (spectrum_cache.h).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <tuple>

#include "conv/arguments.h"
#include "settings.h"
#include "nonfinite/device_checks.h"
#include "nonfinite/direct_fallback.h"
#include "conv/spectrum_cache.h"

namespace fftconv {

// t must be a float32/float64 tensor on the driver's device, on `like`'s device, with its dtype.
inline void check_operand(const at::Tensor& t, const at::Tensor& like, const char* name, at::DeviceType type) {
  TORCH_CHECK(t.device().type() == type, "fftconv: ", name, " must be a ", c10::DeviceTypeName(type),
              " tensor here, got ", t.device());
  TORCH_CHECK(t.device() == like.device(), "fftconv: ", name, " is on ", t.device(), " but expected ",
              like.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "fftconv: ", name,
              " must be float32 or float64, got ", t.scalar_type());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "fftconv: ", name, " dtype ", t.scalar_type(),
              " does not match ", like.scalar_type());
}


inline DirectProblem direct_problem(const ConvGeometry2d& p, const ConvArgs& a) {
  DirectProblem d;
  d.batch = p.batch;
  d.c_in = p.c_in;
  d.c_out = p.c_out;
  d.groups = p.groups;
  d.in_h = p.h.in_len;
  d.in_w = p.w.in_len;
  d.out_h = p.h.out_len;
  d.out_w = p.w.out_len;
  d.kernel_h = p.kernel_h;
  d.kernel_w = p.kernel_w;
  d.stride_h = a.stride[0];
  d.stride_w = a.stride[1];
  d.dilation_h = a.dilation[0];
  d.dilation_w = a.dilation[1];
  d.pad_top = a.padding[0];
  d.pad_left = a.padding[2];
  d.circular = a.circular;
  return d;
}

// The forward with its checks on the device (device_checks.h), when the weight's
// spectrum is cached for this tensor at its version (the weight compared with the
// stored copy), or at a new version of the tensor (an optimizer step: its spectrum
// made now and the weight itself flagged for NaN/Inf), so that a training step's
// forward never waits for the device either; false, touching nothing, otherwise
// (an inference tensor's first call, the cache off, a tensor sent back to host checks).
template <typename Driver>
bool forward_checked_on_device(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                               at::Tensor& out, const ConvGeometry2d& p, const ConvArgs& a) {
  at::Tensor stored;
  std::optional<KernelSpectrumSource> spectra = KernelSpectrumSource::unchecked_hit(weight, p, stored);
  const bool hit = spectra.has_value();
  if (!hit) spectra = KernelSpectrumSource::unchecked_new(weight, p);
  if (!spectra) return false;
  const at::Tensor x = input.contiguous(), w = weight.contiguous();
  // flags: [0] the input holds NaN/Inf, [1] the weight differs from the stored values (a hit)
  // or holds NaN/Inf (a new version)
  at::Tensor flags = at::zeros({2}, input.options().dtype(at::kInt));
  at::Tensor input_flag = flags.narrow(0, 0, 1), weight_flag = flags.narrow(0, 1, 1);
  if (hit) {
    const at::Tensor s = stored.contiguous();
    Driver::flag(w, &s, weight_flag);
  } else {
    Driver::flag(w, nullptr, weight_flag);
  }
  bool input_flagged = false;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "fftconv_forward", [&] {
    input_flagged = Driver::template pipeline<scalar_t>(
        x, *spectra, bias.defined() ? bias.data_ptr<scalar_t>() : nullptr, out, p, /*adjoint=*/false,
        input_flag.data_ptr<int>());
  });
  if (!input_flagged) Driver::flag(x, nullptr, input_flag);  // a pass of its own
  Driver::direct_where_flagged(flags, direct_problem(p, a), x, w, bias, out);
  if (hit) spectra->report_weight_flag(weight_flag);  // a silent edit sends this tensor back to host checks
  return true;
}

template <typename Driver>
at::Tensor forward_entry(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         const ConvArgs& a) {
  check_operand(input, input, "input", Driver::device_type);
  check_operand(weight, input, "weight", Driver::device_type);
  const typename Driver::Guard guard(input.device());
  const ConvGeometry2d p = Driver::geometry_for(geometry_from_shapes(input.sizes(), weight.sizes(), a), input.scalar_type());
  at::Tensor bias_c;
  if (bias.has_value() && bias->defined()) {
    check_operand(*bias, input, "bias", Driver::device_type);
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == p.c_out, "fftconv: bias must have shape (", p.c_out,
                ",), got ", bias->sizes());
    bias_c = bias->contiguous();
  }
  at::Tensor out = at::empty({p.batch, p.c_out, p.h.out_len, p.w.out_len}, input.options());
  if (out.numel() == 0) return out;
  if (p.c_in == 0) return bias_c.defined() ? out.copy_(bias_c.view({1, -1, 1, 1}).expand_as(out)) : out.zero_();
  if (Driver::device_checks() && forward_checked_on_device<Driver>(input, weight, bias_c, out, p, a))
    return out;
  // The input's and weight's finiteness, in one read-back (on CUDA it waits for the device:
  // a weight's first call after it changed, or checks off).
  const KernelSpectrumSource spectra(weight, p, {input});
  if (!spectra.operands_finite()) return direct_forward(input, weight, bias_c, a);
  const at::Tensor x = input.contiguous();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "fftconv_forward", [&] {
    Driver::template pipeline<scalar_t>(x, spectra, bias_c.defined() ? bias_c.data_ptr<scalar_t>() : nullptr, out,
                                        p, /*adjoint=*/false);
  });
  return out;
}

template <typename Driver>
at::Tensor grad_input_entry(const at::Tensor& grad_output, const at::Tensor& weight, at::IntArrayRef input_size,
                            const ConvArgs& a) {
  check_operand(grad_output, grad_output, "grad_output", Driver::device_type);
  check_operand(weight, grad_output, "weight", Driver::device_type);
  const typename Driver::Guard guard(grad_output.device());
  const ConvGeometry2d p = Driver::geometry_for(geometry_from_shapes(input_size, weight.sizes(), a), grad_output.scalar_type());
  check_grad_output(grad_output, p);
  at::Tensor gin = at::empty(input_size, grad_output.options());
  if (gin.numel() == 0) return gin;
  if (p.c_out == 0) return gin.zero_();
  const KernelSpectrumSource spectra(weight, p, {grad_output});
  if (!spectra.operands_finite()) return direct_grad_input(grad_output, weight, input_size, a);
  const at::Tensor g = grad_output.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "fftconv_grad_input", [&] {
    Driver::template pipeline<scalar_t>(g, spectra, nullptr, gin, p, /*adjoint=*/true);
  });
  return gin;
}

template <typename Driver>
at::Tensor grad_weight_entry(const at::Tensor& grad_output, const at::Tensor& input, at::IntArrayRef weight_size,
                             const ConvArgs& a) {
  check_operand(input, input, "input", Driver::device_type);
  check_operand(grad_output, input, "grad_output", Driver::device_type);
  const typename Driver::Guard guard(input.device());
  const ConvGeometry2d p = Driver::geometry_for(geometry_from_shapes(input.sizes(), weight_size, a), input.scalar_type());
  check_grad_output(grad_output, p);
  at::Tensor gw = at::zeros(weight_size, input.options());
  if (gw.numel() == 0 || p.batch == 0) return gw;
  if (!all_finite({grad_output, input})) return direct_grad_weight(grad_output, input, weight_size, a);
  const at::Tensor x = input.contiguous();
  const at::Tensor g = grad_output.contiguous();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "fftconv_grad_weight", [&] {
    Driver::template grad_weight<scalar_t>(x, g, gw, p);
  });
  return gw;
}

// The backward's spectrum where the device checks are on: the forward's
// spectrum of this weight tensor at its version, when the device flags no
// NaN/Inf in the output gradient or the input and no silent weight edit. A
// backward must read that back before it runs (it has no direct correlation
// of its own to fall back on inside the stream), but it reads one value where
// the host checks read two and compare the weight once more. Empty otherwise
// (the host checks then decide).
template <typename Driver>
std::optional<KernelSpectrumSource> backward_spectra_checked_on_device(const at::Tensor& grad_output,
                                                                       const at::Tensor& input,
                                                                       const at::Tensor& weight,
                                                                       const ConvGeometry2d& p) {
  at::Tensor stored;
  std::optional<KernelSpectrumSource> spectra = KernelSpectrumSource::unchecked_hit(weight, p, stored);
  if (!spectra) return std::nullopt;
  at::Tensor flags = at::zeros({2}, input.options().dtype(at::kInt));
  at::Tensor operand_flag = flags.narrow(0, 0, 1), weight_flag = flags.narrow(0, 1, 1);
  const at::Tensor w = weight.contiguous(), s = stored.contiguous();
  Driver::flag(grad_output.contiguous(), nullptr, operand_flag);
  Driver::flag(input.contiguous(), nullptr, operand_flag);
  Driver::flag(w, &s, weight_flag);
  if (flags.sum().item<int64_t>() != 0) return std::nullopt;
  return spectra;
}

// Both gradients of the forward op at once. The output gradient's spectra are
// needed by both (times the kernel spectrum for the input gradient, times the
// input's spectra for the weight gradient), so a driver that can computes
// them once per chunk; otherwise it runs the two pipelines on the operands
// checked here once. Degenerate or non-finite operands go to
// grad_input_entry + grad_weight_entry.
template <typename Driver>
std::tuple<at::Tensor, at::Tensor> backward_entry(const at::Tensor& grad_output, const at::Tensor& input,
                                                  const at::Tensor& weight, const ConvArgs& a) {
  check_operand(input, input, "input", Driver::device_type);
  check_operand(weight, input, "weight", Driver::device_type);
  check_operand(grad_output, input, "grad_output", Driver::device_type);
  const typename Driver::Guard guard(input.device());
  const ConvGeometry2d p = Driver::geometry_for(geometry_from_shapes(input.sizes(), weight.sizes(), a), input.scalar_type());
  check_grad_output(grad_output, p);
  const bool plain = input.numel() > 0 && weight.numel() > 0 && p.batch > 0 && p.c_out > 0;
  std::optional<KernelSpectrumSource> spectra;
  if (plain && Driver::device_checks())
    spectra = backward_spectra_checked_on_device<Driver>(grad_output, input, weight, p);
  // else the three operands' finiteness in one read-back (and a value comparison on a hit)
  if (plain && !spectra) spectra.emplace(weight, p, at::TensorList{grad_output, input});
  if (spectra && spectra->operands_finite()) {
    at::Tensor gin = at::empty(input.sizes(), input.options());
    at::Tensor gw = at::zeros(weight.sizes(), input.options());
    const at::Tensor x = input.contiguous();
    const at::Tensor g = grad_output.contiguous();
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "fftconv_backward", [&] {
      if (!Driver::template backward<scalar_t>(x, g, *spectra, gin, gw, p)) {  // the two pipelines instead
        Driver::template pipeline<scalar_t>(g, *spectra, nullptr, gin, p, /*adjoint=*/true);
        Driver::template grad_weight<scalar_t>(x, g, gw, p);
      }
    });
    return {gin, gw};
  }
  // Degenerate shapes or non-finite operands: the single-gradient entries handle them.
  return {grad_input_entry<Driver>(grad_output, weight, input.sizes(), a),
          grad_weight_entry<Driver>(grad_output, input, weight.sizes(), a)};
}

// float16 and bfloat16 operands are computed in float32 and the results
// returned in their dtype (the pipelines run float32 and float64 only). The
// operands must share the low-precision dtype, as the pipelines' own check
// would demand after the cast.
inline bool is_low_precision(const at::Tensor& t) {
  return t.defined() && (t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16);
}
struct LowPrecisionCall {
  std::optional<at::ScalarType> dtype;  // set when the operands are float16/bfloat16
  explicit LowPrecisionCall(std::initializer_list<const at::Tensor*> operands) {
    const at::Tensor& first = **operands.begin();
    if (!is_low_precision(first)) return;
    for (const at::Tensor* t : operands)
      TORCH_CHECK(!t->defined() || t->scalar_type() == first.scalar_type(), "fftconv: operand dtype ",
                  t->scalar_type(), " does not match ", first.scalar_type());
    dtype = first.scalar_type();
  }
  at::Tensor operand(const at::Tensor& t) const { return dtype && t.defined() ? t.to(at::kFloat) : t; }
  std::optional<at::Tensor> operand(const std::optional<at::Tensor>& t) const {
    if (!t.has_value()) return t;
    return operand(*t);
  }
  at::Tensor result(const at::Tensor& t) const { return dtype ? t.to(*dtype) : t; }
};

// The four convolution ops of a driver with the arguments of their schemas
// (ops.cpp); each backend registers them in its own TORCH_LIBRARY_IMPL.
template <typename Driver>
struct ConvOps {
  static at::Tensor forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                            at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                            bool circular) {
    const at::Tensor no_bias;
    const LowPrecisionCall c({&input, &weight, bias.has_value() ? &*bias : &no_bias});
    return c.result(forward_entry<Driver>(c.operand(input), c.operand(weight), c.operand(bias),
                                          parse_conv_args(stride, padding, dilation, groups, circular)));
  }
  static at::Tensor grad_input(const at::Tensor& grad_output, const at::Tensor& weight, at::IntArrayRef input_size,
                               at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                               int64_t groups, bool circular) {
    const LowPrecisionCall c({&grad_output, &weight});
    return c.result(grad_input_entry<Driver>(c.operand(grad_output), c.operand(weight), input_size,
                                             parse_conv_args(stride, padding, dilation, groups, circular)));
  }
  static at::Tensor grad_weight(const at::Tensor& grad_output, const at::Tensor& input, at::IntArrayRef weight_size,
                                at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                int64_t groups, bool circular) {
    const LowPrecisionCall c({&grad_output, &input});
    return c.result(grad_weight_entry<Driver>(c.operand(grad_output), c.operand(input), weight_size,
                                              parse_conv_args(stride, padding, dilation, groups, circular)));
  }
  static std::tuple<at::Tensor, at::Tensor> backward(const at::Tensor& grad_output, const at::Tensor& input,
                                                     const at::Tensor& weight, at::IntArrayRef stride,
                                                     at::IntArrayRef padding, at::IntArrayRef dilation,
                                                     int64_t groups, bool circular) {
    const LowPrecisionCall c({&grad_output, &input, &weight});
    auto [gin, gw] = backward_entry<Driver>(c.operand(grad_output), c.operand(input), c.operand(weight),
                                            parse_conv_args(stride, padding, dilation, groups, circular));
    return {c.result(gin), c.result(gw)};
  }
};

template <typename Driver>
void register_conv_ops(torch::Library& m) {
  m.impl("conv2d_forward", &ConvOps<Driver>::forward);
  m.impl("conv2d_grad_input", &ConvOps<Driver>::grad_input);
  m.impl("conv2d_grad_weight", &ConvOps<Driver>::grad_weight);
  m.impl("conv2d_backward", &ConvOps<Driver>::backward);
}

}  // namespace fftconv
