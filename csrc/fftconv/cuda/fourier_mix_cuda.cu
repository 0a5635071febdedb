// CUDA fourier_mix: one batched 2-D real-to-complex cuFFT plan per block of
// planes into a half-spectrum buffer, then one kernel that writes the real
// part and its mirror (fourier_mix_value, shared with the CPU loop). Blocks
// of planes bound the extra memory; everything runs on the current stream.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

#include "../fourier_mix.h"
#include "plan_cache.h"

namespace fftconv {
namespace {

constexpr int64_t kBlockBytes = int64_t(256) << 20;  // half spectra per block of planes
constexpr int kThreads = 256;

template <typename T>
__global__ void fourier_mix_store_kernel(const Complex<T>* __restrict__ half, T* __restrict__ out,
                                         int64_t n_tok, int64_t d, T scale, int64_t total) {
  const int64_t n_half = d / 2 + 1;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t l = i % d;
    const int64_t k = (i / d) % n_tok;
    const int64_t q = i / (d * n_tok);
    out[i] = fourier_mix_value(half + q * n_tok * n_half, n_tok, d, n_half, k, l, scale);
  }
}

}  // namespace

at::Tensor fourier_mix_cuda(const at::Tensor& x, const std::string& norm) {
  const at::ScalarType compute = fourier_mix_compute_dtype(x, norm);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t n_tok = x.size(-2), d = x.size(-1);
  const int64_t planes = n_tok * d == 0 ? 0 : x.numel() / (n_tok * d);
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(compute));
  if (out.numel() == 0) return out.to(x.scalar_type());
  // cuFFT reads the real input out of place and leaves it intact.
  const at::Tensor src = x.to(compute).contiguous().view({planes, n_tok, d});
  const int64_t n_half = d / 2 + 1;
  const bool is_double = compute == at::kDouble;
  const int64_t plane_bytes = n_tok * n_half * (is_double ? 16 : 8);
  const int64_t block = std::min<int64_t>(planes, std::max<int64_t>(1, kBlockBytes / plane_bytes));
  at::Tensor half = at::empty({block, n_tok, n_half}, x.options().dtype(c10::toComplexType(compute)));
  const double scale = fourier_mix_scale(norm, n_tok, d);
  AT_DISPATCH_FLOATING_TYPES(compute, "fftconv_fourier_mix_cuda", [&] {
    for (int64_t p0 = 0; p0 < planes; p0 += block) {
      const int64_t np = std::min(block, planes - p0);
      auto plan = cuda::get_plan(x.device().index(), cuda::FftKind::R2C, is_double, d, np, n_tok);
      cuda::exec_plan(*plan, cuda::FftKind::R2C, is_double, src[p0].data_ptr(), half.data_ptr(), true,
                      src.options());
      const int64_t total = np * n_tok * d;
      const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t(65535) * 8);
      fourier_mix_store_kernel<scalar_t><<<blocks, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
          reinterpret_cast<const Complex<scalar_t>*>(half.data_ptr()), out.data_ptr<scalar_t>() + p0 * n_tok * d,
          n_tok, d, static_cast<scalar_t>(scale), total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return compute == x.scalar_type() ? out : out.to(x.scalar_type());
}

}  // namespace fftconv
