// Run-time settings of the operator, one place for all of them. Python sets
// them through fftconv_ext.backends (which also reads the FFTCONV_*
// environment variables once, at import, as start-up defaults); the pipelines
// read them on every call. Relaxed atomics: a setting is a switch, not a
// synchronisation point.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace fftconv {

// The small-plane forward kernel's default shared memory per block (docs/design.md §13).
constexpr int64_t kSmallPlaneSharedBytes = int64_t(48) << 10;

struct Settings {
  // CPU: depthwise stride-1 small planes take the lane pipeline (docs/design.md §12).
  std::atomic<bool> cpu_lanes{true};
  // CPU: spectra bytes per chunk of the chunked pipeline, about one L2.
  std::atomic<int64_t> cpu_chunk_bytes{int64_t(1) << 20};
  // Forward checks on the device (docs/design.md §14): -1 the device's default
  // (on for CUDA, off for the CPU), 0 off, 1 on.
  std::atomic<int> device_checks{-1};
  // CUDA: the small-plane kernels (docs/design.md §13); off until measured on a GPU.
  std::atomic<bool> cuda_small_plane{false};
  // CUDA: shared memory a block of the small-plane forward kernel may use.
  std::atomic<int64_t> cuda_small_plane_shared_bytes{kSmallPlaneSharedBytes};
  // CUDA: whether code that has not yet passed the GPU check may run (verified_on_gpu.h).
  std::atomic<bool> cuda_unverified{false};
};

Settings& settings();

// Whether the device checks run, for a driver whose default is `driver_default`.
inline bool device_checks_on(bool driver_default) {
  const int v = settings().device_checks.load(std::memory_order_relaxed);
  return v < 0 ? driver_default : v != 0;
}

// By name, for the Python module: the names are those of fftconv_ext.backends.
std::vector<std::string> setting_names();
int64_t get_setting(const std::string& name);
void set_setting(const std::string& name, int64_t value);

}  // namespace fftconv
