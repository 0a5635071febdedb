// The small-plane kernels (../small_plane/forward.h, ../small_plane/backward.h)
// for one pair of transform lengths, and their launches. Included by small_plane_h{16,32,48,64}.cu,
// each instantiating the launches of one n_h, so that the 16 kernels compile
// in parallel.
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "cuda/small_plane/backward.h"
#include "cuda/small_plane/forward.h"
#include "cuda/small_plane/launch.h"

namespace fftconv {
namespace small_plane {

// Each phase's items over the block's threads, a barrier between phases.
// `nonfinite` (may be null) is set when the source holds NaN or Inf.
template <int NH, int NW>
__global__ void __launch_bounds__(kThreads)
    small_plane_kernel(Geometry g, const float* __restrict__ src, const Complex<float>* __restrict__ spectrum,
                             const float* __restrict__ bias, float* __restrict__ dst, int* __restrict__ nonfinite) {
  using K = Kernel<float, NH, NW>;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  Complex<float>* shared = reinterpret_cast<Complex<float>*>(shared_bytes);
  const int64_t blk = blockIdx.x;
  int64_t c, b0;
  int count;
  K::block_planes(g, blk, c, b0, count);
  const int t = threadIdx.x, nt = blockDim.x;
  for (int i = t; i < K::kTwiddles; i += nt) K::fill_twiddle(i, shared);
  bool bad = false;
  for (int i = t, n = K::load_items(g, count); i < n; i += nt) bad |= !is_finite(K::load(g, src, c, b0, i, shared));
  if (bad && nonfinite != nullptr) *nonfinite = 1;  // every writer stores the same value
  __syncthreads();
  for (int i = t, n = K::row_items(g, count); i < n; i += nt) K::rows_forward(g, i, shared);
  __syncthreads();
  for (int i = t, n = K::column_items(count); i < n; i += nt) K::columns(g, spectrum, c, i, shared);
  __syncthreads();
  for (int i = t, n = K::out_row_items(g, count); i < n; i += nt) K::rows_inverse(g, i, shared);
  __syncthreads();
  for (int i = t, n = K::store_items(g, count); i < n; i += nt) K::store(g, bias, dst, c, b0, i, shared);
}

template <int NH, int NW>
void launch_small_plane(const Geometry& g, const float* src, const Complex<float>* spectrum, const float* bias,
                  float* dst, int* nonfinite) {
  const int64_t bytes = Kernel<float, NH, NW>::shared_elements(g) * int64_t(sizeof(Complex<float>));
  auto kernel = small_plane_kernel<NH, NW>;
  if (bytes > (48 << 10))
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  kernel<<<static_cast<unsigned>(g.blocks()), kThreads, static_cast<size_t>(bytes),
           at::cuda::getCurrentCUDAStream()>>>(g, src, spectrum, bias, dst, nonfinite);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Backward, launch 1: a channel and a range of the batch per block, P planes a round.
template <int NH, int NW>
__global__ void __launch_bounds__(kThreads)
    joint_backward_kernel(BackwardGeometry g, const float* __restrict__ x, const float* __restrict__ grad_out,
                          const Complex<float>* __restrict__ spectrum, float* __restrict__ gin,
                          Complex<float>* __restrict__ partial) {
  using K = BackwardKernel<float, NH, NW>;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  Complex<float>* shared = reinterpret_cast<Complex<float>*>(shared_bytes);
  const int64_t blk = blockIdx.x;
  int64_t c, b_begin, b_end;
  K::block_batch(g, blk, c, b_begin, b_end);
  const int t = threadIdx.x, nt = blockDim.x;
  for (int i = t; i < K::kTwiddles; i += nt) K::fill_twiddle(i, shared);
  for (int i = t; i < K::kAcc; i += nt) K::zero_acc(i, shared);
  for (int64_t b0 = b_begin; b0 < b_end; b0 += g.planes_per_round) {
    const int count = static_cast<int>(b_end - b0 < g.planes_per_round ? b_end - b0 : g.planes_per_round);
    for (int i = t, n = K::load_items(g, count); i < n; i += nt) K::load(g, x, grad_out, c, b0, count, i, shared);
    __syncthreads();
    for (int i = t, n = K::row_items(g, count); i < n; i += nt) K::rows_forward(g, count, i, shared);
    __syncthreads();
    for (int i = t, n = K::column_items(count); i < n; i += nt) K::columns(g, spectrum, c, i, shared);
    __syncthreads();
    for (int i = t; i < K::kAcc; i += nt) K::accumulate(g, count, i, shared);
    for (int i = t, n = K::gin_row_items(g, count); i < n; i += nt) K::gin_rows(g, i, shared);
    __syncthreads();
    for (int i = t, n = K::store_items(g, count); i < n; i += nt) K::store_gin(g, gin, c, b0, i, shared);
    __syncthreads();
  }
  for (int i = t; i < K::kAcc; i += nt) K::write_partial(blk, i, partial, shared);
}

// Backward, launch 2: a channel per block, its partial sums to weight-gradient taps.
template <int NH, int NW>
__global__ void __launch_bounds__(kThreads)
    weight_taps_kernel(BackwardGeometry g, const Complex<float>* __restrict__ partial, float* __restrict__ grad_weight) {
  using K = BackwardKernel<float, NH, NW>;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  Complex<float>* shared = reinterpret_cast<Complex<float>*>(shared_bytes);
  const int64_t c = blockIdx.x;
  const int t = threadIdx.x, nt = blockDim.x;
  for (int i = t; i < K::kTwiddles; i += nt) K::fill_twiddle(i, shared);
  for (int i = t; i < K::kAcc; i += nt) K::sum_partials(g, partial, c, i, shared);
  __syncthreads();
  for (int i = t; i < K::kFreqW; i += nt) K::correlation_columns(i, shared);
  __syncthreads();
  for (int i = t; i < static_cast<int>(g.ph.tap_count); i += nt) K::taps(g, grad_weight, c, i, shared);
}

template <int NH, int NW>
void launch_joint_backward(const BackwardGeometry& g, const float* x, const float* grad_out,
                           const Complex<float>* spectrum, float* gin, float* grad_weight, Complex<float>* partial) {
  using K = BackwardKernel<float, NH, NW>;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t bytes = K::shared_elements(g) * int64_t(sizeof(Complex<float>));
  auto main_kernel = joint_backward_kernel<NH, NW>;
  if (bytes > (48 << 10))
    C10_CUDA_CHECK(
        cudaFuncSetAttribute(main_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  main_kernel<<<static_cast<unsigned>(g.blocks()), kThreads, static_cast<size_t>(bytes), stream>>>(
      g, x, grad_out, spectrum, gin, partial);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int64_t taps_bytes = K::taps_shared_elements() * int64_t(sizeof(Complex<float>));
  weight_taps_kernel<NH, NW><<<static_cast<unsigned>(g.channels), kThreads, static_cast<size_t>(taps_bytes),
                               stream>>>(g, partial, grad_weight);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace small_plane
}  // namespace fftconv

// The launches of one n_h.
#define FFTCONV_SMALL_PLANE_INSTANTIATE_PAIR(NH, NW)                                                              \
  template void launch_small_plane<NH, NW>(const Geometry&, const float*, const Complex<float>*, const float*, float*, \
                                     int*);                                                                       \
  template void launch_joint_backward<NH, NW>(const BackwardGeometry&, const float*, const float*,                \
                                              const Complex<float>*, float*, float*, Complex<float>*);
#define FFTCONV_SMALL_PLANE_INSTANTIATE(NH)     \
  namespace fftconv {                           \
  namespace small_plane {                       \
  FFTCONV_SMALL_PLANE_INSTANTIATE_PAIR(NH, 16)  \
  FFTCONV_SMALL_PLANE_INSTANTIATE_PAIR(NH, 32)  \
  FFTCONV_SMALL_PLANE_INSTANTIATE_PAIR(NH, 48)  \
  FFTCONV_SMALL_PLANE_INSTANTIATE_PAIR(NH, 64)  \
  }                                             \
  }
