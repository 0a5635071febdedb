// The fused small-plane kernel (../small_plane_fused.h) for one pair of
// transform lengths, and its launch. Included by small_plane_h{16,32,48,64}.cu,
// each instantiating the launches of one n_h, so that the 16 kernels compile
// in parallel.
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "../small_plane_fused.h"
#include "small_plane_launch.h"

namespace fftconv {
namespace small_plane {

// Each phase's items over the block's threads, a barrier between phases.
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

template <int NH, int NW>
void launch_fused(const Geometry& g, const float* src, const Complex<float>* spectrum, const float* bias,
                  float* dst) {
  const int64_t bytes = Kernel<float, NH, NW>::shared_elements(g) * int64_t(sizeof(Complex<float>));
  auto kernel = fused_small_plane_kernel<NH, NW>;
  if (bytes > (48 << 10))
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  kernel<<<static_cast<unsigned>(g.blocks()), kThreads, static_cast<size_t>(bytes),
           at::cuda::getCurrentCUDAStream()>>>(g, src, spectrum, bias, dst);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace small_plane
}  // namespace fftconv

// The four launches of one n_h.
#define FFTCONV_SMALL_PLANE_INSTANTIATE(NH)                                                                    \
  namespace fftconv {                                                                                          \
  namespace small_plane {                                                                                      \
  template void launch_fused<NH, 16>(const Geometry&, const float*, const Complex<float>*, const float*, float*); \
  template void launch_fused<NH, 32>(const Geometry&, const float*, const Complex<float>*, const float*, float*); \
  template void launch_fused<NH, 48>(const Geometry&, const float*, const Complex<float>*, const float*, float*); \
  template void launch_fused<NH, 64>(const Geometry&, const float*, const Complex<float>*, const float*, float*); \
  }                                                                                                            \
  }
