// Which CUDA code has run on a GPU, in one table (verified_on_gpu.cpp).
//
// Every CUDA pipeline, kernel and check that has not yet passed the GPU check
// (bench/gpu_check.sh) is gated: it runs only when the user opts in with
// fftconv_ext.backends.cuda_unverified = True. A flag is flipped only by the
// commit that records the GPU run that passed (bench/results/nvidia-*).
// Device-agnostic: compiled in every build, so the CPU build answers the same
// questions for Python and the tests.
#pragma once

#include <string>
#include <vector>

namespace fftconv {

enum class GpuComponent : int {
  RowsPipeline = 0,        // row-pruned cuFFT pipeline, forward / input gradient / weight gradient
  PlanesPipeline = 1,      // whole-plane cuFFT pipeline (forward and input gradient)
  SmallPlaneForward = 2,        // small-plane kernel, forward and input gradient
  SmallPlaneWeightGradient = 3, // small-plane backward, the weight gradient alone
  SmallPlaneJointBackward = 4,  // small-plane backward, both gradients in one pass
  DeviceChecks = 5,        // NaN/Inf and silent-edit checks on the device, direct fallback kernel
};
constexpr int kGpuComponentCount = 6;

struct GpuComponentInfo {
  const char* name;
  bool verified_on_gpu;
};
const GpuComponentInfo& gpu_component_info(GpuComponent c);

// Whether the component may run now: verified on a GPU, or the user opted in to
// unverified CUDA code; and not disqualified in this process (a run whose output
// disagreed with cuDNN's, or that failed).
bool gpu_component_enabled(GpuComponent c);

void disqualify_gpu_component(GpuComponent c);
void clear_gpu_disqualifications();
bool gpu_component_disqualified(GpuComponent c);

GpuComponent gpu_component_from_name(const std::string& name);
std::vector<std::string> gpu_component_names();

}  // namespace fftconv
