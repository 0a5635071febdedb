// When and how the fused small-plane kernel runs (the kernel itself:
// small_plane_kernel.cuh). float32 only (the dtype of the workloads it is
// for; float64 runs the cuFFT pipeline).
#include "cuda/small_plane/launch.h"
#include "settings.h"

#include <ATen/cuda/CUDAContext.h>

#include <climits>
#include <cstdlib>
#include <cstring>

#include "cuda/small_plane/forward.h"

namespace fftconv {
namespace small_plane {

bool enabled() { return settings().cuda_fused.load(std::memory_order_relaxed); }

namespace {
// Shared memory a block may use (backends.cuda_fused_shared_kb, settings.h).
int64_t shared_budget() { return settings().cuda_fused_shared_bytes.load(std::memory_order_relaxed); }
}  // namespace

bool run_fused(const at::Tensor& src, const at::Tensor& spectrum, const float* bias, at::Tensor& dst,
               const ConvGeometry2d& p, bool adjoint, int* nonfinite) {
  if (!applies(p)) return false;
  bool launched = false;
  with_lengths(p.h.n_fft, p.w.n_fft, [&](auto lengths) {
    constexpr int NH = decltype(lengths)::h, NW = decltype(lengths)::w;
    const Geometry g = Kernel<float, NH, NW>::geometry(p, adjoint, shared_budget());
    if (g.blocks() > INT_MAX) return;  // beyond one grid: the cuFFT pipeline
    launch_fused<NH, NW>(g, src.data_ptr<float>(), reinterpret_cast<const Complex<float>*>(spectrum.data_ptr()),
                         bias, dst.data_ptr<float>(), nonfinite);
    launched = true;
  });
  return launched;
}

bool run_fused_backward(const at::Tensor& input, const at::Tensor& grad_out, const at::Tensor* spectrum,
                        at::Tensor* gin, at::Tensor& grad_weight, const ConvGeometry2d& p) {
  if (!applies(p) || (gin != nullptr && spectrum == nullptr)) return false;
  bool launched = false;
  with_lengths(p.h.n_fft, p.w.n_fft, [&](auto lengths) {
    constexpr int NH = decltype(lengths)::h, NW = decltype(lengths)::w;
    using K = BackwardKernel<float, NH, NW>;
    // about four blocks per multiprocessor in all
    const int64_t target = 4 * int64_t(at::cuda::getCurrentDeviceProperties()->multiProcessorCount);
    const BackwardGeometry g = K::geometry(p, gin != nullptr, kBackwardSharedBytes, target);
    if (g.blocks() > INT_MAX) return;
    at::Tensor partial = at::empty({g.blocks() * K::kAcc * 2}, input.options());
    launch_fused_backward<NH, NW>(
        g, input.data_ptr<float>(), grad_out.data_ptr<float>(),
        gin != nullptr ? reinterpret_cast<const Complex<float>*>(spectrum->data_ptr()) : nullptr,
        gin != nullptr ? gin->data_ptr<float>() : nullptr, grad_weight.data_ptr<float>(),
        reinterpret_cast<Complex<float>*>(partial.data_ptr()));
    launched = true;
  });
  return launched;
}

}  // namespace small_plane
}  // namespace fftconv
