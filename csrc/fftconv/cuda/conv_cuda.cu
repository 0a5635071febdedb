// CUDA driver of the fused FFT correlation: the stages of the CPU driver
// (cpu/conv_cpu.cpp), with cuFFT's batched 2-D real transforms for the FFTs and
// our kernels for the pointwise stages (pointwise.h), all on the current
// stream. Unlike the CPU, the GPU transforms whole padded planes in one 2-D
// plan: rule 4's skipped rows would cost two transposes through memory, more
// than the transforms they save (measured on an H200). Work is cut into batch
// blocks that fit a memory budget.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <type_traits>

#include "../conv_entry.h"
#include "../pointwise.h"
#include "plan_cache.h"

namespace fftconv {
namespace {

constexpr int64_t kChunkBytes = int64_t(256) << 20;  // spectra per batch block
constexpr int kThreads = 256;

// Every kernel runs grid rows (blockIdx.y) over planes and a grid-stride loop
// over one plane's elements along x. In-plane indices have type I: int32_t
// when every in-plane offset a kernel forms stays below 2^30 (32-bit division
// is several times cheaper than 64-bit), int64_t otherwise; plane offsets are
// always 64-bit.
inline dim3 plane_grid(int64_t planes, int64_t per_plane) {
  const int64_t bx = std::min<int64_t>((per_plane + kThreads - 1) / kThreads, 4096);
  const int64_t by = std::min<int64_t>(planes, 65535);
  return dim3(static_cast<unsigned>(std::max<int64_t>(bx, 1)), static_cast<unsigned>(std::max<int64_t>(by, 1)));
}

#define FFTCONV_PLANES(q, planes) for (int64_t q = blockIdx.y; q < (planes); q += gridDim.y)
#define FFTCONV_IN_PLANE(I, e, per_plane)                                                     \
  for (I e = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); \
       e < (per_plane); e += static_cast<I>(blockDim.x) * static_cast<I>(gridDim.x))

// kernel<T, I><<<...>>>(args..., planes, per_plane); `bound` is the largest
// in-plane offset the kernel forms, which picks I.
#define FFTCONV_LAUNCH_PLANES(kernel, T, planes, per_plane, bound, ...)                          \
  do {                                                                                           \
    const int64_t planes_ = (planes), per_plane_ = (per_plane);                                  \
    if (planes_ > 0 && per_plane_ > 0) {                                                         \
      const dim3 grid_ = plane_grid(planes_, per_plane_);                                        \
      const cudaStream_t stream_ = at::cuda::getCurrentCUDAStream();                             \
      if ((bound) < (int64_t(1) << 30))                                                          \
        kernel<T, int32_t><<<grid_, kThreads, 0, stream_>>>(__VA_ARGS__, planes_,                \
                                                            static_cast<int32_t>(per_plane_));   \
      else                                                                                       \
        kernel<T, int64_t><<<grid_, kThreads, 0, stream_>>>(__VA_ARGS__, planes_, per_plane_);   \
      C10_CUDA_KERNEL_LAUNCH_CHECK();                                                            \
    }                                                                                            \
  } while (0)

struct PlaneSource {
  int64_t channels, planes_per_group, src_h, src_w, step_h, step_w;
};

PlaneSource input_side(const ConvPlan2d& p) { return {p.c_in, p.cpg, p.h.in_len, p.w.in_len, 1, 1}; }
PlaneSource output_side(const ConvPlan2d& p) {
  return {p.c_out, p.opg, p.h.out_len, p.w.out_len, p.h.stride, p.w.stride};
}

// ---- kernels: thin loops around the shared pointwise functions -------------

// Padded (and, for the input gradient, zero-stuffed) n_h x n_w planes of a block.
template <typename T, typename I>
__global__ void pad_load_kernel(const T* __restrict__ src, T* __restrict__ dst, PlaneSource s, int64_t b0,
                                int64_t g0, int64_t per_batch, int64_t n_w_, int64_t planes, I per_plane) {
  const I n_w = static_cast<I>(n_w_);
  const I src_h = static_cast<I>(s.src_h), src_w = static_cast<I>(s.src_w);
  const I step_h = static_cast<I>(s.step_h), step_w = static_cast<I>(s.step_w);
  FFTCONV_PLANES(q, planes) {
    const int64_t b = b0 + q / per_batch;
    const int64_t c = g0 * s.planes_per_group + q % per_batch;
    const T* plane = src + (b * s.channels + c) * s.src_h * s.src_w;
    T* out = dst + q * static_cast<int64_t>(per_plane);
    FFTCONV_IN_PLANE(I, e, per_plane) {
      const I r = e / n_w;
      out[e] = pad_load_value_2d(plane, src_h, src_w, step_h, step_w, r, e - r * n_w);
    }
  }
}

// Output plane qo = (b*ng + g)*dpg + q of the products; in place (out == in)
// when every output plane reads only its own input plane (depthwise).
template <typename T, typename I>
__global__ void spectral_multiply_kernel(const Complex<T>* in, const Complex<T>* __restrict__ spec,
                                         Complex<T>* out, int64_t ng, int64_t g0, int64_t cpg, int64_t opg,
                                         bool adjoint, int64_t planes, I nf) {
  const int64_t spg = adjoint ? opg : cpg;
  const int64_t dpg = adjoint ? cpg : opg;
  const int64_t nf64 = nf;
  const int64_t s_step = spectrum_plane_step(cpg, adjoint) * nf64;
  FFTCONV_PLANES(qo, planes) {
    const int64_t q = qo % dpg, bg = qo / dpg, g = bg % ng;
    const Complex<T>* x = in + bg * spg * nf64;
    const Complex<T>* sp = spec + spectrum_plane(g0 + g, q, 0, cpg, opg, adjoint) * nf64;
    Complex<T>* y = out + qo * nf64;
    FFTCONV_IN_PLANE(I, e, nf) { y[e] = spectral_dot(x + e, nf64, sp + e, s_step, spg, adjoint); }
  }
}

// Crop (every step-th slot) + bias from n_h x n_w planes into the destination.
template <typename T, typename I>
__global__ void crop_store_kernel(const T* __restrict__ buf, T* __restrict__ dst, const T* __restrict__ bias,
                                  int64_t b0, int64_t per_batch, int64_t c0, int64_t dst_c, int64_t out_w_,
                                  int64_t n_w_, int64_t buf_plane, int64_t step_h_, int64_t step_w_, int64_t planes,
                                  I per_plane) {
  const I out_w = static_cast<I>(out_w_), n_w = static_cast<I>(n_w_);
  const I step_h = static_cast<I>(step_h_), step_w = static_cast<I>(step_w_);
  FFTCONV_PLANES(q, planes) {
    const int64_t b = b0 + q / per_batch, c = c0 + q % per_batch;
    const T bias_c = bias ? bias[c] : T(0);
    const T* plane = buf + q * buf_plane;
    T* o = dst + (b * dst_c + c) * static_cast<int64_t>(per_plane);
    FFTCONV_IN_PLANE(I, e, per_plane) {
      const I i = e / out_w;
      o[e] = crop_store_value(plane, n_w, step_h, step_w, i, e - i * out_w, bias_c);
    }
  }
}

// acc[(g*opg + o)*cpg + c] += sum_b X[b, g, c] * conj(G[b, g, o])  (rule 9)
template <typename T, typename I>
__global__ void weight_correlation_kernel(const Complex<T>* __restrict__ X, const Complex<T>* __restrict__ G,
                                          Complex<T>* __restrict__ acc, int64_t nb, int64_t ng, int64_t cpg,
                                          int64_t opg, int64_t planes, I nf) {
  const int64_t nf64 = nf;
  FFTCONV_PLANES(qa, planes) {
    const int64_t c = qa % cpg, o = (qa / cpg) % opg, g = qa / (cpg * opg);
    Complex<T>* a = acc + qa * nf64;
    FFTCONV_IN_PLANE(I, e, nf) {
      Complex<T> sum = a[e];
      for (int64_t b = 0; b < nb; ++b) {
        const Complex<T> v = cmul_conj(X[((b * ng + g) * cpg + c) * nf64 + e], G[((b * ng + g) * opg + o) * nf64 + e]);
        sum.re += v.re;
        sum.im += v.im;
      }
      a[e] = sum;
    }
  }
}

template <typename T, typename I>
__global__ void gather_taps_kernel(const T* __restrict__ r, T* __restrict__ gw, AxisPlan ph, AxisPlan pw,
                                   int64_t kh, int64_t kw, int64_t n_w, int64_t r_plane, T scale, int64_t planes,
                                   I per_plane) {
  FFTCONV_PLANES(q, planes) {
    const T* rp = r + q * r_plane;
    T* g = gw + q * kh * kw;
    FFTCONV_IN_PLANE(I, e, per_plane) {
      const int64_t th = static_cast<int64_t>(e) / pw.tap_count;
      const int64_t tw = static_cast<int64_t>(e) - th * pw.tap_count;
      g[(ph.tap_begin + th) * kw + pw.tap_begin + tw] = scale * gather_tap_value(rp, n_w, ph, pw, th, tw);
    }
  }
}

// ---- stages ----------------------------------------------------------------

// Batched transforms of n_h x n_w real planes (2-D; 1-D when n_h == 1).
template <typename T>
void run_fft(cuda::FftKind kind, int64_t n_h, int64_t n_w, int64_t batch, void* in, void* out,
             const at::TensorOptions& opts) {
  if (batch == 0) return;
  const bool is_double = std::is_same<T, double>::value;
  auto plan = cuda::get_plan(opts.device().index(), kind, is_double, n_w, batch, n_h);
  cuda::exec_plan(*plan, kind, is_double, in, out, kind == cuda::FftKind::R2C, opts);
}

// Half spectra (P, n_h, n_w/2+1), row-major planes, of a block's planes.
template <typename T>
at::Tensor block_spectra(const at::Tensor& src, const PlaneSource& s, const ConvPlan2d& p, int64_t b0,
                         int64_t nb, int64_t g0, int64_t ng) {
  const int64_t per_batch = ng * s.planes_per_group, planes = nb * per_batch;
  const int64_t n_h = p.h.n_fft, n_w = p.w.n_fft;
  const auto real_opts = src.options();
  at::Tensor real = at::empty({planes, n_h, n_w}, real_opts);
  FFTCONV_LAUNCH_PLANES(pad_load_kernel, T, planes, n_h * n_w, std::max(n_h * n_w, s.src_h * s.src_w),
                        src.data_ptr<T>(), real.data_ptr<T>(), s, b0, g0, per_batch, n_w);
  at::Tensor spec = at::empty({planes, n_h, p.n_freq_w}, real_opts.dtype(c10::toComplexType(src.scalar_type())));
  run_fft<T>(cuda::FftKind::R2C, n_h, n_w, planes, real.data_ptr(), spec.data_ptr(), real_opts);
  return spec;
}

// Real planes (P, n_h, n_w) of (P, n_h, n_w/2+1) product spectra. cuFFT's C2R
// may overwrite its input: `spec` is the caller's to clobber.
template <typename T>
at::Tensor block_inverse(at::Tensor& spec, const ConvPlan2d& p, const at::TensorOptions& real_opts) {
  at::Tensor real = at::empty({spec.size(0), p.h.n_fft, p.w.n_fft}, real_opts);
  run_fft<T>(cuda::FftKind::C2R, p.h.n_fft, p.w.n_fft, spec.size(0), spec.data_ptr(), real.data_ptr(), real_opts);
  return real;
}

template <typename T>
void run_pipeline(const at::Tensor& src, const at::Tensor& spec, const T* bias, at::Tensor& dst,
                  const ConvPlan2d& p, bool adjoint) {
  const PlaneSource s = adjoint ? output_side(p) : input_side(p);
  const int64_t spg = adjoint ? p.opg : p.cpg;
  const int64_t dpg = adjoint ? p.cpg : p.opg;
  const int64_t dst_c = adjoint ? p.c_in : p.c_out;
  const int64_t out_h = adjoint ? p.h.in_len : p.h.out_len;
  const int64_t out_w = adjoint ? p.w.in_len : p.w.out_len;
  const int64_t step_h = adjoint ? 1 : p.h.stride;
  const int64_t step_w = adjoint ? 1 : p.w.stride;
  const int64_t plane = p.h.n_fft * p.w.n_fft;
  const ChunkShape cs = choose_chunk(p, 2 * sizeof(T), kChunkBytes, 1);
  const auto* spec_ptr = reinterpret_cast<const Complex<T>*>(spec.data_ptr());
  for (int64_t b0 = 0; b0 < p.batch; b0 += cs.batch_block) {
    const int64_t nb = std::min(cs.batch_block, p.batch - b0);
    for (int64_t g0 = 0; g0 < p.groups; g0 += cs.group_block) {
      const int64_t ng = std::min(cs.group_block, p.groups - g0);
      at::Tensor x = block_spectra<T>(src, s, p, b0, nb, g0, ng);
      at::Tensor y = spg == 1 && dpg == 1 ? x : at::empty({nb * ng * dpg, p.h.n_fft, p.n_freq_w}, x.options());
      FFTCONV_LAUNCH_PLANES(spectral_multiply_kernel, T, nb * ng * dpg, p.n_freq, p.n_freq,
                            reinterpret_cast<const Complex<T>*>(x.data_ptr()), spec_ptr,
                            reinterpret_cast<Complex<T>*>(y.data_ptr()), ng, g0, p.cpg, p.opg, adjoint);
      x = at::Tensor();  // free before the inverse (stream-ordered reuse)
      at::Tensor r = block_inverse<T>(y, p, src.options());
      y = at::Tensor();
      FFTCONV_LAUNCH_PLANES(crop_store_kernel, T, nb * ng * dpg, out_h * out_w, std::max(out_h * out_w, plane),
                            r.data_ptr<T>(), dst.data_ptr<T>(), bias, b0, ng * dpg, g0 * dpg, dst_c, out_w,
                            p.w.n_fft, plane, step_h, step_w);
    }
  }
}

template <typename T>
void grad_weight_pipeline(const at::Tensor& input, const at::Tensor& grad_out, at::Tensor& gw,
                          const ConvPlan2d& p) {
  const PlaneSource xs = input_side(p), gs = output_side(p);
  const ChunkShape cs = choose_chunk(p, 2 * sizeof(T), kChunkBytes, 1);
  const auto cplx_opts = input.options().dtype(c10::toComplexType(input.scalar_type()));
  const int64_t plane = p.h.n_fft * p.w.n_fft;
  for (int64_t g0 = 0; g0 < p.groups; g0 += cs.group_block) {
    const int64_t ng = std::min(cs.group_block, p.groups - g0);
    at::Tensor acc = at::zeros({ng * p.opg * p.cpg, p.h.n_fft, p.n_freq_w}, cplx_opts);
    for (int64_t b0 = 0; b0 < p.batch; b0 += cs.batch_block) {
      const int64_t nb = std::min(cs.batch_block, p.batch - b0);
      at::Tensor X = block_spectra<T>(input, xs, p, b0, nb, g0, ng);
      at::Tensor G = block_spectra<T>(grad_out, gs, p, b0, nb, g0, ng);
      FFTCONV_LAUNCH_PLANES(weight_correlation_kernel, T, acc.size(0), p.n_freq, p.n_freq,
                            reinterpret_cast<const Complex<T>*>(X.data_ptr()),
                            reinterpret_cast<const Complex<T>*>(G.data_ptr()),
                            reinterpret_cast<Complex<T>*>(acc.data_ptr()), nb, ng, p.cpg, p.opg);
    }
    at::Tensor r = block_inverse<T>(acc, p, input.options());
    const T scale = T(1) / static_cast<T>(plane);
    FFTCONV_LAUNCH_PLANES(gather_taps_kernel, T, ng * p.opg * p.cpg, p.h.tap_count * p.w.tap_count, plane,
                          r.data_ptr<T>(), gw.data_ptr<T>() + g0 * p.opg * p.cpg * p.kernel_h * p.kernel_w, p.h,
                          p.w, p.kernel_h, p.kernel_w, p.w.n_fft, plane, scale);
  }
}

struct CudaDriver {
  static constexpr at::DeviceType device_type = at::kCUDA;
  using Guard = c10::cuda::CUDAGuard;
  template <typename T>
  static void pipeline(const at::Tensor& src, const at::Tensor& spec, const T* bias, at::Tensor& dst,
                       const ConvPlan2d& p, bool adjoint) {
    run_pipeline<T>(src, spec, bias, dst, p, adjoint);
  }
  template <typename T>
  static void grad_weight(const at::Tensor& input, const at::Tensor& grad_out, at::Tensor& gw,
                          const ConvPlan2d& p) {
    grad_weight_pipeline<T>(input, grad_out, gw, p);
  }
  // No fused backward on CUDA yet: backward_entry runs the two pipelines.
  template <typename T>
  static bool backward(const at::Tensor&, const at::Tensor&, const at::Tensor&, at::Tensor&, at::Tensor&,
                       const ConvPlan2d&) {
    return false;
  }
};

}  // namespace

at::Tensor conv2d_forward_cuda(const at::Tensor& input, const at::Tensor& weight,
                               const std::optional<at::Tensor>& bias, const ConvArgs& a) {
  return forward_entry<CudaDriver>(input, weight, bias, a);
}

at::Tensor conv2d_grad_input_cuda(const at::Tensor& grad_output, const at::Tensor& weight,
                                  at::IntArrayRef input_size, const ConvArgs& a) {
  return grad_input_entry<CudaDriver>(grad_output, weight, input_size, a);
}

at::Tensor conv2d_grad_weight_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                   at::IntArrayRef weight_size, const ConvArgs& a) {
  return grad_weight_entry<CudaDriver>(grad_output, input, weight_size, a);
}

std::tuple<at::Tensor, at::Tensor> conv2d_backward_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                                        const at::Tensor& weight, const ConvArgs& a) {
  return backward_entry<CudaDriver>(grad_output, input, weight, a);
}

}  // namespace fftconv
