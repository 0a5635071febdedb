// cuFFT plans for the batched transforms of the pipelines, cached per
// (device, kind, precision, shape, batch). Thread-safe and LRU-bounded; a
// plan is executed under its own lock (cufftSetStream + exec must not
// interleave between threads), with its work area taken from PyTorch's caching
// allocator on the current stream, so no memory outlives a call.
#pragma once

#include <ATen/ATen.h>
#include <cufft.h>

#include <cstdint>
#include <memory>
#include <mutex>

namespace fftconv {
namespace cuda {

enum class FftKind : int { R2C = 0, C2C = 1, C2R = 2 };

const char* cufft_status_name(cufftResult status);

// Throws a RuntimeError naming the cuFFT status and the problem size
// (batch transforms of n_outer x n points; n_outer is 1 for 1-D plans).
void check_cufft(cufftResult status, const char* what, int64_t n, int64_t batch, int64_t n_outer = 1);

struct CufftPlan {
  cufftHandle handle = 0;
  size_t work_bytes = 0;
  int64_t n = 0, batch = 0, n_outer = 1;  // for error messages
  std::mutex mutex;
  ~CufftPlan();
};

// A contiguous batch of `batch` 1-D transforms of length n (for R2C/C2R, n is
// the real length; the complex side has n/2+1 elements per transform), or of
// 2-D transforms of n_outer x n points when n_outer > 1 (fourier_mix).
// stride > 0 (1-D only): element j of transform b at b + j * stride, the
// batch innermost (the convolution's transforms along H over row-interleaved
// planes, see cuda/conv_cuda.cu).
std::shared_ptr<CufftPlan> get_plan(int device, FftKind kind, bool is_double, int64_t n, int64_t batch,
                                    int64_t n_outer = 1, int64_t stride = 0);

// Run a plan on the current stream of the current device. `forward` matters for C2C.
void exec_plan(CufftPlan& plan, FftKind kind, bool is_double, void* in, void* out, bool forward,
               const at::TensorOptions& device_opts);

// Cache control (exposed to Python as fftconv_ext.set_cache_limit / clear_caches).
void set_plan_cache_limit(int64_t n);
int64_t plan_cache_size();
void clear_plan_cache();

}  // namespace cuda
}  // namespace fftconv
