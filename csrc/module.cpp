// fftconv_ext._C: importing it loads this library, which registers the
// torch.ops.fftconv operators (ops.cpp and the backends' TORCH_LIBRARY_IMPL).
// The Python module itself carries only what the package uses: build
// information, the FFT lengths (for algo="auto"), the settings and the caches.
// Test hooks live in fftconv_ext._testing (testing/testing.cpp).
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/extension.h>

#include <string>
#include <vector>

#include "conv/arguments.h"
#include "conv/pipeline_choice.h"
#include "conv/spectrum_cache.h"
#include "settings.h"
#include "verified_on_gpu.h"
#ifdef FFTCONV_WITH_CUDA
#include "cuda/cufft_plan_cache.h"
#endif
#if defined(__GNUC__) && defined(__x86_64__)
#include "cpu/isa_dispatch.h"
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

// The instruction-set build of the CPU's vector loops (decided once per process).
std::string cpu_isa() {
#if defined(__GNUC__) && defined(__x86_64__)
  return cpu::cpu_has_avx2_fma() ? "avx2+fma" : "baseline";
#else
  return "baseline";
#endif
}

// (n_fft_h, n_fft_w) the operator uses for a problem (docs/design.md §1).
std::vector<int64_t> fft_shape(at::IntArrayRef input_size, at::IntArrayRef weight_size, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, bool circular) {
  const ConvGeometry2d p =
      geometry_from_shapes(input_size, weight_size, parse_conv_args(stride, padding, dilation, groups, circular));
  return {p.h.n_fft, p.w.n_fft};
}

// Appends one operand's part of a decided call's key: its Python type, rank, dtype, device,
// requires_grad and sizes. False for an object that is not a tensor.
bool append_operand(std::string& key, PyObject* obj) {
  if (!THPVariable_Check(obj)) return false;
  const at::Tensor& t = THPVariable_Unpack(obj);
  const int64_t head[6] = {static_cast<int64_t>(reinterpret_cast<intptr_t>(Py_TYPE(obj))), t.dim(),
                           static_cast<int64_t>(t.scalar_type()), static_cast<int64_t>(t.device().type()),
                           t.device().index(), t.requires_grad()};
  key.append(reinterpret_cast<const char*>(head), sizeof(head));
  key.append(reinterpret_cast<const char*>(t.sizes().data()), t.sizes().size() * sizeof(int64_t));
  return true;
}

// What a decided call (fftconv_ext/arguments.py, call_key) depends on besides the Python-side
// arguments, as bytes: each operand (append_operand), grad mode, the autocast dtype of the
// input's device type and the thread count. One call instead of some twenty attribute reads
// from Python, on every call of a decided problem. None when an operand is not a tensor, and
// while torch.jit traces (the checked path then records what the trace needs).
py::object operand_key(py::handle input, py::handle weight, py::handle bias) {
  if (torch::jit::tracer::isTracing()) return py::none();
  std::string key;
  key.reserve(160);
  if (!append_operand(key, input.ptr()) || !append_operand(key, weight.ptr())) return py::none();
  if (!bias.is_none() && !append_operand(key, bias.ptr())) return py::none();
  const at::DeviceType device_type = THPVariable_Unpack(input.ptr()).device().type();
  int64_t autocast = -1;
  if ((device_type == at::kCPU || device_type == at::kCUDA) && at::autocast::is_autocast_enabled(device_type)) {
    autocast = static_cast<int64_t>(at::autocast::get_autocast_dtype(device_type));
  }
  const int64_t context[4] = {bias.is_none(), at::GradMode::is_enabled(), autocast, at::get_num_threads()};
  key.append(reinterpret_cast<const char*>(context), sizeof(context));
  return py::bytes(key);
}

// spectra: the kernel-spectrum cache's limit; plans: the cuFFT plan cache's (negative: unchanged).
void set_cache_limits(int64_t spectra, int64_t plans) {
  set_spectrum_cache_limit(spectra);
#ifdef FFTCONV_WITH_CUDA
  if (plans >= 0) cuda::set_plan_cache_limit(plans);
#else
  (void)plans;
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

// algo="auto"'s record of the CUDA pipeline it measured fastest for a problem and direction
// (0 forward, 1 input gradient, 2 weight gradient, 3 both gradients in one pass); see
// pipeline_choice.h.
void set_pipeline_choice_for(at::IntArrayRef input_size, at::IntArrayRef weight_size, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, bool circular,
                             int64_t device, bool is_double, int64_t direction, const std::string& pipeline) {
  TORCH_CHECK_VALUE(direction >= 0 && direction < kDirectionCount, "fftconv: direction must be 0, 1, 2 or 3, got ",
                    direction);
  const ConvGeometry2d p =
      geometry_from_shapes(input_size, weight_size, parse_conv_args(stride, padding, dilation, groups, circular));
  set_pipeline_choice(p, static_cast<int>(device), is_double, static_cast<Direction>(direction),
                      pipeline_from_name(pipeline));
}

std::string force_pipeline(const std::string& name) {
  return pipeline_info(set_forced_pipeline(pipeline_from_name(name))).name;
}

// Per pipeline: whether its forward has run on a GPU (verified_on_gpu.cpp).
std::vector<bool> pipelines_verified() {
  std::vector<bool> v;
  for (int i = 0; i < kPipelineCount; ++i)
    v.push_back(gpu_component_info(component_of(static_cast<Pipeline>(i), Direction::Forward)).verified_on_gpu);
  return v;
}

bool pipeline_applies_to(const std::string& pipeline, at::IntArrayRef input_size, at::IntArrayRef weight_size,
                         at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                         bool circular, bool is_double, int64_t direction) {
  TORCH_CHECK_VALUE(direction >= 0 && direction < kDirectionCount, "fftconv: direction must be 0, 1, 2 or 3, got ",
                    direction);
  const ConvGeometry2d p =
      geometry_from_shapes(input_size, weight_size, parse_conv_args(stride, padding, dilation, groups, circular));
  return pipeline_applies(pipeline_from_name(pipeline), p, is_double, static_cast<Direction>(direction));
}

std::vector<bool> gpu_components_verified() {
  std::vector<bool> v;
  for (int i = 0; i < kGpuComponentCount; ++i) v.push_back(gpu_component_info(static_cast<GpuComponent>(i)).verified_on_gpu);
  return v;
}

}  // namespace
}  // namespace fftconv

PYBIND11_MODULE(_C, m) {
  m.def("built_with_cuda", &fftconv::built_with_cuda, "True when the CUDA/cuFFT kernels are compiled in.");
  m.def("cpu_isa", &fftconv::cpu_isa, "'avx2+fma' or 'baseline': the build of the CPU vector loops that runs.");
  m.def("fft_shape", &fftconv::fft_shape, "(n_fft_h, n_fft_w) used for a conv2d problem.", py::arg("input_size"),
        py::arg("weight_size"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("circular"));
  m.def("operand_key", &fftconv::operand_key, py::arg("input"), py::arg("weight"), py::arg("bias"),
        "The operands' and the calling context's part of a decided call's key (bytes; None for non-tensors\n"
        "and while torch.jit traces).");
  m.def("setting_names", &fftconv::setting_names);
  m.def("get_setting", &fftconv::get_setting, py::arg("name"));
  m.def("set_setting", &fftconv::set_setting, py::arg("name"), py::arg("value"));
  m.def("set_cache_limits", &fftconv::set_cache_limits, py::arg("spectra"), py::arg("plans"));
  m.def("clear_caches", &fftconv::clear_caches);
  m.def("pipeline_names", &fftconv::pipeline_names, "The CUDA pipelines, in the order of pipelines_verified().");
  m.def("pipelines_verified", &fftconv::pipelines_verified,
        "Per pipeline: whether it has passed the CUDA tests on a GPU (pipeline_choice.cpp).");
  m.def("set_pipeline_choice", &fftconv::set_pipeline_choice_for, py::arg("input_size"), py::arg("weight_size"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("circular"),
        py::arg("device"), py::arg("is_double"), py::arg("direction"), py::arg("pipeline"));
  m.def("clear_pipeline_choices", &fftconv::clear_pipeline_choices);
  m.def("pipeline_choice_count", &fftconv::pipeline_choice_count);
  m.def("force_pipeline", &fftconv::force_pipeline, py::arg("pipeline"),
        "Force a pipeline on the calling thread ('default': none); returns the previous one.");
  m.def("pipeline_applies", &fftconv::pipeline_applies_to, py::arg("pipeline"), py::arg("input_size"),
        py::arg("weight_size"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("circular"), py::arg("is_double"), py::arg("direction"),
        "Whether a CUDA pipeline runs a conv2d problem itself in a direction (else it hands it to 'rows').");
  m.def("gpu_component_names", &fftconv::gpu_component_names,
        "The gated CUDA components, in the order of gpu_components_verified() (verified_on_gpu.h).");
  m.def("gpu_components_verified", &fftconv::gpu_components_verified,
        "Per component: whether it has passed the GPU check (the one table, verified_on_gpu.cpp).");
  m.def("gpu_component_enabled", [](const std::string& name) {
    return fftconv::gpu_component_enabled(fftconv::gpu_component_from_name(name));
  }, py::arg("name"), "Verified or opted in (backends.cuda_unverified), and not disqualified in this process.");
  m.def("disqualify_gpu_component", [](const std::string& name) {
    fftconv::disqualify_gpu_component(fftconv::gpu_component_from_name(name));
  }, py::arg("name"), "Keep a component off for the rest of the process (its output disagreed, or it failed).");
  m.def("clear_gpu_disqualifications", &fftconv::clear_gpu_disqualifications);
  m.def("cache_info", &fftconv::cache_info, "(spectrum cache limit, cached spectra, cached cuFFT plans)");
}
