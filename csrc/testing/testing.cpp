// fftconv_ext._testing: hooks for the test suite only. Nothing a user calls
// imports it. It is a separate extension linked against fftconv_ext._C, whose
// internals it calls: which pipeline takes a problem (so tests of a pipeline
// cannot pass vacuously), the spectrum cache's counters, the host emulation of
// the small-plane CUDA kernels (so the CPU tests run their code), and
// how cuFFT failures surface.
#include <torch/extension.h>

#include <optional>
#include <tuple>
#include <vector>

#include "conv/arguments.h"
#include "conv/spectrum_cache.h"
#include "cpu/lane_pipeline.h"
#include "testing/small_plane_emulation.h"
#include "testing/whole_plane_emulation.h"
#ifdef FFTCONV_WITH_CUDA
#include "cuda/cufft_plan_cache.h"
#endif

namespace fftconv {
namespace {

ConvGeometry2d geometry_of(at::IntArrayRef input_size, at::IntArrayRef weight_size, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, bool circular) {
  return geometry_from_shapes(input_size, weight_size, parse_conv_args(stride, padding, dilation, groups, circular));
}

int64_t lane_pipeline_mode(at::IntArrayRef input_size, at::IntArrayRef weight_size, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, bool circular) {
  return cpu::lane_pipeline_mode(geometry_of(input_size, weight_size, stride, padding, dilation, groups, circular));
}

int64_t lane_backward_mode(at::IntArrayRef input_size, at::IntArrayRef weight_size, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, bool circular,
                           bool input_grad, bool float64) {
  return cpu::lane_backward_mode(geometry_of(input_size, weight_size, stride, padding, dilation, groups, circular),
                                 input_grad, float64);
}

std::vector<int64_t> small_plane_lengths(at::IntArrayRef input_size, at::IntArrayRef weight_size,
                                         at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                         int64_t groups, bool circular) {
  return small_plane::small_plane_lengths(geometry_of(input_size, weight_size, stride, padding, dilation, groups, circular));
}

at::Tensor small_plane_emulate(const at::Tensor& src, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                               at::IntArrayRef input_size, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, int64_t groups, bool circular, bool adjoint, bool reverse,
                               int64_t shared_bytes, const std::optional<at::Tensor>& nonfinite) {
  const ConvGeometry2d p = geometry_of(input_size, weight.sizes(), stride, padding, dilation, groups, circular);
  return small_plane::emulate_small_plane(src, weight, bias, p, adjoint, reverse, shared_bytes, nonfinite);
}

std::tuple<at::Tensor, at::Tensor> small_plane_emulate_backward(
    const at::Tensor& grad_out, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, bool circular, bool input_grad, bool reverse,
    int64_t shared_bytes, int64_t target_blocks) {
  const ConvGeometry2d p = geometry_of(input.sizes(), weight.sizes(), stride, padding, dilation, groups, circular);
  return small_plane::emulate_small_plane_backward(grad_out, input, weight, p, input_grad, reverse, shared_bytes,
                                             target_blocks);
}

at::Tensor whole_plane_emulate(const at::Tensor& src, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                               at::IntArrayRef input_size, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, int64_t groups, bool adjoint, int64_t batch_block,
                               int64_t group_block) {
  const ConvGeometry2d p = geometry_of(input_size, weight.sizes(), stride, padding, dilation, groups, false);
  return emulate_whole_plane(src, weight, bias, p, adjoint, batch_block, group_block);
}

}  // namespace
}  // namespace fftconv

PYBIND11_MODULE(_testing, m) {
  m.def("lane_pipeline_mode", &fftconv::lane_pipeline_mode,
        "0: the CPU lane pipeline declines a conv2d problem; 1, 2: it takes it, gathering kernel spectra "
        "whole or by column.",
        py::arg("input_size"), py::arg("weight_size"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"), py::arg("circular"));
  m.def("lane_backward_mode", &fftconv::lane_backward_mode,
        "0: the CPU lane backward declines a float32 (float64) conv2d problem; 1, 2: it takes it, gathering "
        "kernel spectra whole or by column. input_grad: both gradients, else the weight gradient alone.",
        py::arg("input_size"), py::arg("weight_size"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"), py::arg("circular"), py::arg("input_grad"), py::arg("float64") = false);
  m.def("small_plane_lengths", &fftconv::small_plane_lengths,
        "(n_h, n_w) of the small-plane CUDA kernel for a conv2d problem, or [] when it does not take it.",
        py::arg("input_size"), py::arg("weight_size"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"), py::arg("circular"));
  m.def("small_plane_emulate", &fftconv::small_plane_emulate,
        "The small-plane CUDA kernel's output computed on the host by running its phases. src is the "
        "input, or the output gradient when adjoint. nonfinite (a CPU int32 tensor of one element) is set to 1 "
        "when the kernel would flag NaN/Inf in src.",
        py::arg("src"), py::arg("weight"), py::arg("bias"), py::arg("input_size"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("circular"), py::arg("adjoint"),
        py::arg("reverse") = false, py::arg("shared_bytes") = 0, py::arg("nonfinite") = py::none());
  m.def("whole_plane_emulate", &fftconv::whole_plane_emulate,
        "The CUDA whole-plane pipeline's output on the host (its own pointwise functions, ATen's 2-D FFTs).",
        py::arg("src"), py::arg("weight"), py::arg("bias"), py::arg("input_size"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("adjoint"), py::arg("batch_block"),
        py::arg("group_block"));
  m.def("small_plane_emulate_backward", &fftconv::small_plane_emulate_backward,
        "(grad_input or None, grad_weight) of the small-plane CUDA backward computed on the host by "
        "running its phases.",
        py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("groups"), py::arg("circular"), py::arg("input_grad"),
        py::arg("reverse") = false, py::arg("shared_bytes") = 0, py::arg("target_blocks") = 528);
  m.def("spectrum_cache_unchecked_hits", &fftconv::spectrum_cache_unchecked_hits,
        "Forward calls that found their spectrum without comparing values and checked on the device.");
  m.def("spectrum_cache_value_comparisons", &fftconv::spectrum_cache_value_comparisons,
        "Cached weights compared by value with a call's weight (each waits for the device on CUDA).");
  m.def("spectrum_cache_host_checks", &fftconv::spectrum_cache_host_checks,
        "Calls whose operands' finiteness the host read back (each waits for the device on CUDA).");
  m.def("spectrum_cache_silent_edits_seen", &fftconv::spectrum_cache_silent_edits_seen,
        "Weight edits without a version bump that the device checks reported back.");
#ifdef FFTCONV_WITH_CUDA
  m.def("cufft_check", [](int status, const std::string& what, int64_t n, int64_t batch, int64_t n_outer) {
    fftconv::cuda::check_cufft(static_cast<cufftResult>(status), what.c_str(), n, batch, n_outer);
  });
  m.def("cufft_plan", [](int device, int64_t n, int64_t batch, int64_t n_outer) {
    fftconv::cuda::get_plan(device, fftconv::cuda::FftKind::R2C, false, n, batch, n_outer);
  });
#endif
}
