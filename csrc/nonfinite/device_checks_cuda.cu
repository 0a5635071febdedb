// The device checks' stages as CUDA kernels (device_check_ops.h): the flag is
// set and read on the device, so the forward never waits for it.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <algorithm>

#include "nonfinite/device_check_ops.h"

namespace fftconv {
namespace {

constexpr int kThreads = 256;

// A few waves of resident blocks; threads loop over the rest.
unsigned grid_for(int64_t n) {
  const int64_t most = 8 * int64_t(at::cuda::getCurrentDeviceProperties()->multiProcessorCount);
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, most)));
}

template <typename T>
__global__ void flag_kernel(const T* __restrict__ a, const T* __restrict__ b, int64_t n, int* __restrict__ flag) {
  bool found = false;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n && !found;
       i += int64_t(gridDim.x) * blockDim.x)
    found = flags_element(a, b, i);
  if (found) *flag = 1;  // every writer stores the same value
}

template <typename T>
__global__ void direct_where_flagged_kernel(const int* __restrict__ flags, DirectProblem d, const T* __restrict__ x,
                                            const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ out) {
  if (flags[0] == 0 && flags[1] == 0) return;  // the common case: two reads per thread
  const int64_t n = d.outputs();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = direct_output(d, x, w, bias, i);
}

}  // namespace

void flag_cuda(const at::Tensor& a, const at::Tensor* b, at::Tensor& flag) {
  if (a.numel() == 0) return;
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "fftconv_flag_cuda", [&] {
    flag_kernel<scalar_t><<<grid_for(a.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        a.data_ptr<scalar_t>(), b != nullptr ? b->data_ptr<scalar_t>() : nullptr, a.numel(), flag.data_ptr<int>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void direct_where_flagged_cuda(const at::Tensor& flags, const DirectProblem& d, const at::Tensor& x,
                               const at::Tensor& w, const at::Tensor& bias, at::Tensor& out) {
  if (d.outputs() == 0) return;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fftconv_direct_where_flagged_cuda", [&] {
    direct_where_flagged_kernel<scalar_t><<<grid_for(d.outputs()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        flags.data_ptr<int>(), d, x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
        bias.defined() ? bias.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace fftconv
