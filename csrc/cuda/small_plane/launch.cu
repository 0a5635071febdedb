// When and how the small-plane kernel runs (the kernel itself:
// small_plane/kernel.cuh). float32 only (the dtype of the workloads it is
// for; float64 runs the cuFFT pipeline).
#include "cuda/small_plane/launch.h"
#include "settings.h"

#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "cuda/small_plane/forward.h"

namespace fftconv {
namespace small_plane {

bool enabled() { return settings().cuda_small_plane.load(std::memory_order_relaxed); }

namespace {
// The most shared memory a block of this device can be given (with the opt-in attribute):
// 227 KB on an H100/H200, 163 KB on an A100, 99 KB on consumer parts.
int64_t device_shared_limit() {
  return static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->sharedMemPerBlockOptin);
}
// Shared memory a block may use: backends.cuda_small_plane_shared_kb (settings.h), within what the
// device gives; asking cudaFuncSetAttribute for more fails the call.
int64_t shared_budget() {
  return std::min(settings().cuda_small_plane_shared_bytes.load(std::memory_order_relaxed), device_shared_limit());
}
}  // namespace

bool run_small_plane(const at::Tensor& src, const at::Tensor& spectrum, const float* bias, at::Tensor& dst,
               const ConvGeometry2d& p, bool adjoint, int* nonfinite) {
  if (!applies(p)) return false;
  bool launched = false;
  with_lengths(p.h.n_fft, p.w.n_fft, [&](auto lengths) {
    constexpr int NH = decltype(lengths)::h, NW = decltype(lengths)::w;
    using K = Kernel<float, NH, NW>;
    const Geometry g = K::geometry(p, adjoint, shared_budget());
    if (g.blocks() > INT_MAX) return;  // beyond one grid: the cuFFT pipeline
    // one plane a block always: a plane larger than the device's shared memory goes to cuFFT
    if (K::shared_elements(g) * int64_t(sizeof(Complex<float>)) > device_shared_limit()) return;
    launch_small_plane<NH, NW>(g, src.data_ptr<float>(), reinterpret_cast<const Complex<float>*>(spectrum.data_ptr()),
                         bias, dst.data_ptr<float>(), nonfinite);
    launched = true;
  });
  return launched;
}

bool run_joint_backward(const at::Tensor& input, const at::Tensor& grad_out, const at::Tensor* spectrum,
                        at::Tensor* gin, at::Tensor& grad_weight, const ConvGeometry2d& p) {
  if (!applies(p) || (gin != nullptr && spectrum == nullptr)) return false;
  bool launched = false;
  with_lengths(p.h.n_fft, p.w.n_fft, [&](auto lengths) {
    constexpr int NH = decltype(lengths)::h, NW = decltype(lengths)::w;
    using K = BackwardKernel<float, NH, NW>;
    // about four blocks per multiprocessor in all
    const int64_t target = 4 * int64_t(at::cuda::getCurrentDeviceProperties()->multiProcessorCount);
    const BackwardGeometry g = K::geometry(p, gin != nullptr, std::min(kBackwardSharedBytes, device_shared_limit()),
                                           target);
    if (g.blocks() > INT_MAX) return;
    if (K::shared_elements(g) * int64_t(sizeof(Complex<float>)) > device_shared_limit()) return;
    at::Tensor partial = at::empty({g.blocks() * K::kAcc * 2}, input.options());
    launch_joint_backward<NH, NW>(
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
