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

#include <torch/library.h>

#include "fourier_mix/fourier_mix.h"
#include "cuda/cufft_plan_cache.h"

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

namespace {
at::Tensor fourier_mix_cuda(const at::Tensor& x, const std::string& norm) {
  const c10::cuda::CUDAGuard guard(x.device());
  const FourierMixCall c = prepare_fourier_mix(x, norm);  // cuFFT reads src out of place, intact
  if (c.out.numel() == 0) return c.result(x);
  const bool is_double = c.compute == at::kDouble;
  const int64_t block = std::min<int64_t>(c.planes, std::max<int64_t>(1, kBlockBytes / c.half_plane_bytes()));
  at::Tensor half = at::empty({block, c.n_tok, c.n_half}, x.options().dtype(c10::toComplexType(c.compute)));
  AT_DISPATCH_FLOATING_TYPES(c.compute, "fftconv_fourier_mix_cuda", [&] {
    for (int64_t p0 = 0; p0 < c.planes; p0 += block) {
      const int64_t np = std::min(block, c.planes - p0);
      auto plan = cuda::get_plan(x.device().index(), cuda::FftKind::R2C, is_double, c.d, np, c.n_tok);
      cuda::exec_plan(*plan, cuda::FftKind::R2C, is_double, c.src[p0].data_ptr(), half.data_ptr(), true,
                      c.src.options());
      const int64_t total = np * c.n_tok * c.d;
      const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t(65535) * 8);
      fourier_mix_store_kernel<scalar_t><<<blocks, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
          reinterpret_cast<const Complex<scalar_t>*>(half.data_ptr()),
          c.out.data_ptr<scalar_t>() + p0 * c.n_tok * c.d, c.n_tok, c.d, static_cast<scalar_t>(c.scale), total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return c.result(x);
}
}  // namespace

TORCH_LIBRARY_IMPL(fftconv, CUDA, m) {
  m.impl("fourier_mix", [](const at::Tensor& x, c10::string_view norm) { return fourier_mix_cuda(x, std::string(norm)); });
}

}  // namespace fftconv
