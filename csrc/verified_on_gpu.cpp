#include "verified_on_gpu.h"

#include <c10/util/Exception.h>

#include <atomic>

#include "settings.h"

namespace fftconv {
namespace {

// The one place the flags live. The row-pruned pipeline passed the CUDA tests on an
// H200 (bench/results/nvidia-h200.*); nothing else has run on a GPU yet.
constexpr GpuComponentInfo kInfo[kGpuComponentCount] = {
    {"rows", true},
    {"planes", false},
    {"small_plane", false},
    {"small_plane_weight_gradient", false},
    {"small_plane_joint_backward", false},
    {"device_checks", false},
};

std::atomic<bool> disqualified[kGpuComponentCount];

int index_of(GpuComponent c) {
  const int i = static_cast<int>(c);
  TORCH_CHECK(i >= 0 && i < kGpuComponentCount, "fftconv: no GPU component ", i);
  return i;
}

}  // namespace

const GpuComponentInfo& gpu_component_info(GpuComponent c) { return kInfo[index_of(c)]; }

bool gpu_component_enabled(GpuComponent c) {
  const int i = index_of(c);
  if (disqualified[i].load(std::memory_order_relaxed)) return false;
  return kInfo[i].verified_on_gpu || settings().cuda_unverified.load(std::memory_order_relaxed);
}

void disqualify_gpu_component(GpuComponent c) { disqualified[index_of(c)].store(true); }

void clear_gpu_disqualifications() {
  for (auto& d : disqualified) d.store(false);
}

bool gpu_component_disqualified(GpuComponent c) { return disqualified[index_of(c)].load(); }

GpuComponent gpu_component_from_name(const std::string& name) {
  for (int i = 0; i < kGpuComponentCount; ++i)
    if (name == kInfo[i].name) return static_cast<GpuComponent>(i);
  std::string names;
  for (const auto& info : kInfo) names += std::string(names.empty() ? "'" : ", '") + info.name + "'";
  TORCH_CHECK_VALUE(false, "fftconv: GPU component must be one of ", names, ", got '", name, "'");
}

std::vector<std::string> gpu_component_names() {
  std::vector<std::string> names;
  for (const auto& info : kInfo) names.emplace_back(info.name);
  return names;
}

}  // namespace fftconv
