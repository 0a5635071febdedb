// The fused small-plane kernel on the GPU: each phase of small_plane_fused.h
// over the block's threads, a barrier between phases. float32 only (the
// dtype of the workloads it is for; float64 runs the cuFFT pipeline).
#include "small_plane_launch.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <climits>
#include <cstdlib>
#include <cstring>

#include "../small_plane_fused.h"

namespace fftconv {
namespace small_plane {
namespace {

template <int NH, int NW>
__global__ void __launch_bounds__(kThreads)
    fused_small_plane_kernel(Geometry g, const float* __restrict__ src, const Complex<float>* __restrict__ spectrum,
                             const float* __restrict__ bias, float* __restrict__ dst) {
  using K = Kernel<float, NH, NW>;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  Complex<float>* shared = reinterpret_cast<Complex<float>*>(shared_bytes);
  const int64_t blk = blockIdx.x;
  int64_t c, b0;
  int count;
  K::block_planes(g, blk, c, b0, count);
  const int t = threadIdx.x, nt = blockDim.x;
  for (int i = t; i < K::kTwiddles; i += nt) K::fill_twiddle(i, shared);
  for (int i = t, n = K::load_items(g, count); i < n; i += nt) K::load(g, src, blk, i, shared);
  __syncthreads();
  for (int i = t, n = K::row_items(g, count); i < n; i += nt) K::rows_forward(g, i, shared);
  __syncthreads();
  for (int i = t, n = K::column_items(count); i < n; i += nt) K::columns(g, spectrum, blk, i, shared);
  __syncthreads();
  for (int i = t, n = K::out_row_items(g, count); i < n; i += nt) K::rows_inverse(g, i, shared);
  __syncthreads();
  for (int i = t, n = K::store_items(g, count); i < n; i += nt) K::store(g, bias, dst, blk, i, shared);
}

}  // namespace

bool enabled() {
  const char* v = std::getenv("FFTCONV_CUDA_FUSED");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

namespace {
// Shared memory a block may use: FFTCONV_CUDA_FUSED_SHARED_KB (the GPU
// check's sweep, read per call) or the default.
int64_t shared_budget() {
  const char* v = std::getenv("FFTCONV_CUDA_FUSED_SHARED_KB");
  const long kb = v != nullptr ? std::strtol(v, nullptr, 10) : 0;
  return kb > 0 && kb <= 200 ? int64_t(kb) << 10 : kSharedBytes;
}
}  // namespace

bool run_fused(const at::Tensor& src, const at::Tensor& spectrum, const float* bias, at::Tensor& dst,
               const ConvPlan2d& p, bool adjoint) {
  if (!applies(p)) return false;
  bool launched = false;
  with_lengths(p.h.n_fft, p.w.n_fft, [&](auto lengths) {
    constexpr int NH = decltype(lengths)::h, NW = decltype(lengths)::w;
    using K = Kernel<float, NH, NW>;
    const Geometry g = K::geometry(p, adjoint, shared_budget());
    if (g.blocks() > INT_MAX) return;  // beyond one grid: the cuFFT pipeline
    const int64_t bytes = K::shared_elements(g) * int64_t(sizeof(Complex<float>));
    auto kernel = fused_small_plane_kernel<NH, NW>;
    if (bytes > (48 << 10))
      C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
    kernel<<<static_cast<unsigned>(g.blocks()), kThreads, static_cast<size_t>(bytes),
             at::cuda::getCurrentCUDAStream()>>>(g, src.data_ptr<float>(),
                                                 reinterpret_cast<const Complex<float>*>(spectrum.data_ptr()), bias,
                                                 dst.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    launched = true;
  });
  return launched;
}

}  // namespace small_plane
}  // namespace fftconv
