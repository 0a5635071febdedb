// Schemas and kernels of the torch.ops.fftconv namespace: one place for every
// operator this extension registers.
#include <torch/extension.h>
#include <torch/library.h>

#include <vector>

#include "fftconv/conv_ops.h"
#include "fftconv/cpu/lane_pipeline.h"
#include "fftconv/fourier_mix.h"
#include "fftconv/small_plane_emulation.h"
#include "fftconv/spectrum_cache.h"
#ifdef FFTCONV_WITH_CUDA
#include "fftconv/cuda/plan_cache.h"
#endif

namespace fftconv {
namespace {

bool built_with_cuda() {
#ifdef FFTCONV_WITH_CUDA
  return true;
#else
  return false;
#endif
}

at::Tensor forward_cpu(const at::Tensor& input, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                       bool circular) {
  return conv2d_forward_cpu(input, weight, bias, parse_conv_args(stride, padding, dilation, groups, circular));
}
at::Tensor grad_input_cpu(const at::Tensor& grad_output, const at::Tensor& weight,
                          at::IntArrayRef input_size, at::IntArrayRef stride, at::IntArrayRef padding,
                          at::IntArrayRef dilation, int64_t groups, bool circular) {
  return conv2d_grad_input_cpu(grad_output, weight, input_size,
                               parse_conv_args(stride, padding, dilation, groups, circular));
}
at::Tensor grad_weight_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                           at::IntArrayRef weight_size, at::IntArrayRef stride, at::IntArrayRef padding,
                           at::IntArrayRef dilation, int64_t groups, bool circular) {
  return conv2d_grad_weight_cpu(grad_output, input, weight_size,
                                parse_conv_args(stride, padding, dilation, groups, circular));
}

std::tuple<at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                                const at::Tensor& weight, at::IntArrayRef stride,
                                                at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                                bool circular) {
  return conv2d_backward_cpu(grad_output, input, weight, parse_conv_args(stride, padding, dilation, groups, circular));
}

#ifdef FFTCONV_WITH_CUDA
std::tuple<at::Tensor, at::Tensor> backward_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                                 const at::Tensor& weight, at::IntArrayRef stride,
                                                 at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                                 bool circular) {
  return conv2d_backward_cuda(grad_output, input, weight, parse_conv_args(stride, padding, dilation, groups, circular));
}
at::Tensor forward_cuda(const at::Tensor& input, const at::Tensor& weight,
                        const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                        at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                        bool circular) {
  return conv2d_forward_cuda(input, weight, bias, parse_conv_args(stride, padding, dilation, groups, circular));
}
at::Tensor grad_input_cuda(const at::Tensor& grad_output, const at::Tensor& weight,
                           at::IntArrayRef input_size, at::IntArrayRef stride, at::IntArrayRef padding,
                           at::IntArrayRef dilation, int64_t groups, bool circular) {
  return conv2d_grad_input_cuda(grad_output, weight, input_size,
                                parse_conv_args(stride, padding, dilation, groups, circular));
}
at::Tensor grad_weight_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                            at::IntArrayRef weight_size, at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation, int64_t groups, bool circular) {
  return conv2d_grad_weight_cuda(grad_output, input, weight_size,
                                 parse_conv_args(stride, padding, dilation, groups, circular));
}
#endif

// Long 1-D convolution (S4 / SGConv / Hyena style, DESIGN.md §2 rule 11):
// causal y[t] = sum_{s<=t} k[s] u[t-s] is a correlation with the flipped
// kernel and Lk-1 zeros on the left, so the FFT length is L + Lk - 1 rounded
// up (rule 1 gives exactly rule 11); circular is the same with circular
// padding, i.e. N = L. Composite: autograd and torch.compile go through
// conv2d_forward and its registered backward.
at::Tensor long_conv1d(const at::Tensor& u, const at::Tensor& k, const std::optional<at::Tensor>& D,
                       bool causal) {
  TORCH_CHECK(u.dim() == 3, "fftconv.long_conv1d: u must be (B, C, L), got ", u.sizes());
  TORCH_CHECK(k.dim() == 2, "fftconv.long_conv1d: k must be (C, Lk), got ", k.sizes());
  const int64_t C = u.size(1), L = u.size(2), Lk = k.size(1);
  TORCH_CHECK(k.size(0) == C, "fftconv.long_conv1d: k has ", k.size(0), " channels, u has ", C);
  TORCH_CHECK(Lk >= 1 && Lk <= L, "fftconv.long_conv1d: kernel length must be in [1, L = ", L, "], got ", Lk);
  static const auto conv = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("fftconv::conv2d_forward", "")
                               .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                                 const std::optional<at::Tensor>&, at::IntArrayRef,
                                                 at::IntArrayRef, at::IntArrayRef, int64_t, bool)>();
  at::Tensor w = k.flip({1}).view({C, 1, 1, Lk});
  at::Tensor y = conv.call(u.unsqueeze(2), w, std::nullopt, {1, 1}, {0, 0, Lk - 1, 0}, {1, 1}, C, !causal)
                     .squeeze(2);
  if (D.has_value() && D->defined()) {
    TORCH_CHECK(D->dim() == 1 && D->size(0) == C, "fftconv.long_conv1d: D must be (C,) = (", C, ",), got ",
                D->sizes());
    y = y + D->view({1, C, 1}) * u;
  }
  return y;
}

// (n_fft_h, n_fft_w) the operator uses for a problem: exposed so that tests
// can check the alias-free length (rule 1).
std::vector<int64_t> fft_shape(at::IntArrayRef input_size, at::IntArrayRef weight_size,
                               at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, int64_t groups, bool circular) {
  const ConvPlan2d p = plan_from_shapes(input_size, weight_size,
                                        parse_conv_args(stride, padding, dilation, groups, circular));
  return {p.h.n_fft, p.w.n_fft};
}

// Whether the CPU's lane pipeline takes a problem (with its kernel spectrum
// cached), and how (cpu::lane_pipeline_mode): a test hook, so that tests of
// that pipeline cannot pass vacuously.
int64_t lane_pipeline_mode(at::IntArrayRef input_size, at::IntArrayRef weight_size, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, bool circular) {
  return cpu::lane_pipeline_mode(
      plan_from_shapes(input_size, weight_size, parse_conv_args(stride, padding, dilation, groups, circular)));
}

// Whether the CPU's lane backward takes a problem (both gradients, or the
// weight gradient alone), and how (cpu::lane_backward_mode): a test hook.
int64_t lane_backward_mode(at::IntArrayRef input_size, at::IntArrayRef weight_size, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, bool circular,
                           bool input_grad, bool float64) {
  return cpu::lane_backward_mode(
      plan_from_shapes(input_size, weight_size, parse_conv_args(stride, padding, dilation, groups, circular)),
      input_grad, float64);
}

// The fused small-plane CUDA kernel's lengths for a problem (empty: it does
// not take it) and its phases run on the host: test hooks, so that the CPU
// tests check the kernel without a GPU.
std::vector<int64_t> small_plane_lengths(at::IntArrayRef input_size, at::IntArrayRef weight_size,
                                         at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                         int64_t groups, bool circular) {
  return small_plane::fused_lengths(
      plan_from_shapes(input_size, weight_size, parse_conv_args(stride, padding, dilation, groups, circular)));
}
at::Tensor small_plane_emulate(const at::Tensor& src, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                               at::IntArrayRef input_size, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, int64_t groups, bool circular, bool adjoint, bool reverse,
                               int64_t shared_bytes, const std::optional<at::Tensor>& nonfinite) {
  const ConvPlan2d p =
      plan_from_shapes(input_size, weight.sizes(), parse_conv_args(stride, padding, dilation, groups, circular));
  return small_plane::emulate_fused(src, weight, bias, p, adjoint, reverse, shared_bytes, nonfinite);
}

std::tuple<at::Tensor, at::Tensor> small_plane_emulate_backward(
    const at::Tensor& grad_out, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, bool circular, bool input_grad, bool reverse,
    int64_t shared_bytes, int64_t target_blocks) {
  const ConvPlan2d p =
      plan_from_shapes(input.sizes(), weight.sizes(), parse_conv_args(stride, padding, dilation, groups, circular));
  return small_plane::emulate_fused_backward(grad_out, input, weight, p, input_grad, reverse, shared_bytes,
                                             target_blocks);
}

void set_cache_limit(int64_t entries) {
  set_spectrum_cache_limit(entries);
#ifdef FFTCONV_WITH_CUDA
  cuda::set_plan_cache_limit(entries);
#endif
}

void clear_caches() {
  clear_spectrum_cache();
#ifdef FFTCONV_WITH_CUDA
  cuda::clear_plan_cache();
#endif
}

std::vector<int64_t> cache_info() {
#ifdef FFTCONV_WITH_CUDA
  const int64_t plans = cuda::plan_cache_size();
#else
  const int64_t plans = 0;
#endif
  return {spectrum_cache_limit(), spectrum_cache_size(), plans};
}

}  // namespace

TORCH_LIBRARY(fftconv, m) {
  // padding is (top, bottom, left, right); circular selects circular padding.
  m.def("conv2d_forward(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[] padding, "
        "int[] dilation, int groups, bool circular) -> Tensor");
  m.def("conv2d_grad_input(Tensor grad_output, Tensor weight, int[] input_size, int[] stride, "
        "int[] padding, int[] dilation, int groups, bool circular) -> Tensor");
  m.def("conv2d_grad_weight(Tensor grad_output, Tensor input, int[] weight_size, int[] stride, "
        "int[] padding, int[] dilation, int groups, bool circular) -> Tensor");
  // (grad_input, grad_weight) together: one transform of grad_output serves both.
  m.def("conv2d_backward(Tensor grad_output, Tensor input, Tensor weight, int[] stride, int[] padding, "
        "int[] dilation, int groups, bool circular) -> (Tensor, Tensor)");
  m.def("long_conv1d(Tensor u, Tensor k, Tensor? D, bool causal) -> Tensor");
  // Re(FFT2(x)) over the last two dimensions; norm as in torch.fft.
  m.def("fourier_mix(Tensor x, str norm=\"backward\") -> Tensor");
}

TORCH_LIBRARY_IMPL(fftconv, CompositeImplicitAutograd, m) {
  m.impl("long_conv1d", &long_conv1d);
}

TORCH_LIBRARY_IMPL(fftconv, CPU, m) {
  m.impl("conv2d_forward", &forward_cpu);
  m.impl("conv2d_grad_input", &grad_input_cpu);
  m.impl("conv2d_grad_weight", &grad_weight_cpu);
  m.impl("conv2d_backward", &backward_cpu);
  m.impl("fourier_mix", [](const at::Tensor& x, c10::string_view norm) {
    return fourier_mix_cpu(x, std::string(norm));
  });
}

#ifdef FFTCONV_WITH_CUDA
TORCH_LIBRARY_IMPL(fftconv, CUDA, m) {
  m.impl("conv2d_forward", &forward_cuda);
  m.impl("conv2d_grad_input", &grad_input_cuda);
  m.impl("conv2d_grad_weight", &grad_weight_cuda);
  m.impl("conv2d_backward", &backward_cuda);
  m.impl("fourier_mix", [](const at::Tensor& x, c10::string_view norm) {
    return fourier_mix_cuda(x, std::string(norm));
  });
}
#endif

}  // namespace fftconv

// Importing fftconv_ext._C loads this library, which runs the registrations
// above; the module itself carries build information and the planner.
PYBIND11_MODULE(_C, m) {
  m.def("built_with_cuda", &fftconv::built_with_cuda, "True when the CUDA/cuFFT kernels are compiled in.");
  m.def("fft_shape", &fftconv::fft_shape, "(n_fft_h, n_fft_w) used for a conv2d problem.",
        py::arg("input_size"), py::arg("weight_size"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("groups"), py::arg("circular"));
  m.def("_lane_pipeline_mode", &fftconv::lane_pipeline_mode,
        "0: the CPU lane pipeline declines a conv2d problem; 1, 2: it takes it, gathering kernel spectra "
        "whole or by column (a test hook).", py::arg("input_size"),
        py::arg("weight_size"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("circular"));
  m.def("_lane_backward_mode", &fftconv::lane_backward_mode,
        "0: the CPU lane backward declines a float32 (float64) conv2d problem; 1, 2: it takes it, gathering "
        "kernel spectra whole or by column (a test hook). input_grad: both gradients, else the weight gradient "
        "alone.",
        py::arg("input_size"), py::arg("weight_size"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"), py::arg("circular"), py::arg("input_grad"), py::arg("float64") = false);
  m.def("_small_plane_lengths", &fftconv::small_plane_lengths,
        "(n_h, n_w) of the fused small-plane CUDA kernel for a conv2d problem, or [] when it does not take "
        "it (a test hook).", py::arg("input_size"), py::arg("weight_size"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("groups"), py::arg("circular"));
  m.def("_small_plane_emulate", &fftconv::small_plane_emulate,
        "The fused small-plane CUDA kernel's output computed on the host by running its phases (a test hook). "
        "src is the input, or the output gradient when adjoint. nonfinite (a CPU int32 tensor of one "
        "element) is set to 1 when the kernel would flag NaN/Inf in src.",
        py::arg("src"), py::arg("weight"), py::arg("bias"), py::arg("input_size"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("circular"), py::arg("adjoint"),
        py::arg("reverse") = false, py::arg("shared_bytes") = 0, py::arg("nonfinite") = py::none());
  m.def("_small_plane_emulate_backward", &fftconv::small_plane_emulate_backward,
        "(grad_input or None, grad_weight) of the fused small-plane CUDA backward computed on the host by "
        "running its phases (a test hook).",
        py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("groups"), py::arg("circular"), py::arg("input_grad"),
        py::arg("reverse") = false, py::arg("shared_bytes") = 0, py::arg("target_blocks") = 528);
  m.def("set_cache_limit", &fftconv::set_cache_limit, py::arg("entries"));
  m.def("_set_spectrum_cache_limit", &fftconv::set_spectrum_cache_limit, py::arg("entries"),
        "The kernel-spectrum cache's limit alone (the benchmark's cache-off memory measurement).");
  m.def("clear_caches", &fftconv::clear_caches);
  m.def("cache_info", &fftconv::cache_info, "(limit, cached spectra, cached cuFFT plans)");
  m.def("_spectrum_cache_unchecked_hits", &fftconv::spectrum_cache_unchecked_hits,
        "Forward calls that found their spectrum without comparing values and checked on the device "
        "(a test hook).");
  m.def("_spectrum_cache_value_comparisons", &fftconv::spectrum_cache_value_comparisons,
        "Cached weights compared by value with a call's weight (each waits for the device on CUDA; a test "
        "hook).");
  m.def("_spectrum_cache_silent_edits_seen", &fftconv::spectrum_cache_silent_edits_seen,
        "Weight edits without a version bump that the device checks reported back (a test hook).");
#ifdef FFTCONV_WITH_CUDA
  // Test hooks: how cuFFT failures surface (issue: errors name status and size).
  m.def("_cufft_check", [](int status, const std::string& what, int64_t n, int64_t batch, int64_t n_outer) {
    fftconv::cuda::check_cufft(static_cast<cufftResult>(status), what.c_str(), n, batch, n_outer);
  });
  m.def("_cufft_plan", [](int device, int64_t n, int64_t batch, int64_t n_outer) {
    fftconv::cuda::get_plan(device, fftconv::cuda::FftKind::R2C, false, n, batch, n_outer);
  });
#endif
}
