// CUDA driver of the fused FFT correlation: the same stages as the CPU driver
// (cpu/conv_cpu.cpp) with cuFFT for the transforms and our kernels for the
// pointwise stages (pointwise.h), all on the current stream. Work is cut into
// batch blocks that fit a memory budget.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

#include "../conv_entry.h"
#include "../pointwise.h"
#include "plan_cache.h"

namespace fftconv {
namespace {

constexpr int64_t kChunkBytes = int64_t(256) << 20;  // spectra per batch block
constexpr int kThreads = 256;

// Grid for a grid-stride loop over n elements (64-bit indices throughout).
inline dim3 grid_for(int64_t n) {
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(65535) * 8);
  return dim3(static_cast<unsigned>(std::max<int64_t>(blocks, 1)));
}

#define FFTCONV_GRID_STRIDE(i, n)                                                   \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += int64_t(blockDim.x) * gridDim.x)

struct PlaneSource {
  int64_t channels, planes_per_group, src_h, src_w, step_h, step_w, rows_used;
};

PlaneSource input_side(const ConvPlan2d& p) {
  return {p.c_in, p.cpg, p.h.in_len, p.w.in_len, 1, 1, p.h.in_len};
}
PlaneSource output_side(const ConvPlan2d& p) {
  return {p.c_out, p.opg, p.h.out_len, p.w.out_len, p.h.stride, p.w.stride, p.h.dense_len};
}

// ---- kernels: thin loops around the shared pointwise functions -------------

template <typename T>
__global__ void pad_load_kernel(const T* __restrict__ src, T* __restrict__ dst, PlaneSource s,
                                int64_t b0, int64_t g0, int64_t per_batch, int64_t n_w, int64_t total) {
  FFTCONV_GRID_STRIDE(idx, total) {
    const int64_t m = idx % n_w;
    const int64_t r = (idx / n_w) % s.rows_used;
    const int64_t q = idx / (n_w * s.rows_used);
    const int64_t b = b0 + q / per_batch;
    const int64_t c = g0 * s.planes_per_group + q % per_batch;
    const T* plane = src + (b * s.channels + c) * s.src_h * s.src_w;
    dst[idx] = pad_load_value_2d(plane, s.src_h, s.src_w, s.step_h, s.step_w, r, m);
  }
}

template <typename T>
__global__ void transpose_pad_kernel(const Complex<T>* __restrict__ rows, Complex<T>* __restrict__ cols,
                                     int64_t n_rows, int64_t nfw, int64_t n_h, int64_t total) {
  FFTCONV_GRID_STRIDE(idx, total) {
    const int64_t r = idx % n_h;
    const int64_t f = (idx / n_h) % nfw;
    const int64_t q = idx / (n_h * nfw);
    cols[idx] = transpose_pad_value(rows + q * n_rows * nfw, n_rows, nfw, f, r);
  }
}

template <typename T>
__global__ void transpose_select_kernel(const Complex<T>* __restrict__ cols, Complex<T>* __restrict__ rows,
                                        int64_t n_h, int64_t nfw, int64_t count, int64_t step,
                                        int64_t total) {
  FFTCONV_GRID_STRIDE(idx, total) {
    const int64_t f = idx % nfw;
    const int64_t i = (idx / nfw) % count;
    const int64_t q = idx / (nfw * count);
    rows[idx] = transpose_select_value(cols + q * nfw * n_h, n_h, step, i, f);
  }
}

template <typename T>
__global__ void spectral_multiply_kernel(const Complex<T>* __restrict__ in, const Complex<T>* __restrict__ spec,
                                         Complex<T>* __restrict__ out, int64_t ng, int64_t g0, int64_t cpg,
                                         int64_t opg, int64_t nf, bool adjoint, int64_t total) {
  const int64_t spg = adjoint ? opg : cpg;
  const int64_t dpg = adjoint ? cpg : opg;
  FFTCONV_GRID_STRIDE(idx, total) {
    const int64_t f = idx % nf;
    const int64_t q = (idx / nf) % dpg;
    const int64_t bg = idx / (nf * dpg);  // b * ng + g
    const int64_t g = bg % ng;
    const Complex<T>* x = in + bg * spg * nf + f;
    const Complex<T>* s = spec + spectrum_plane(g0 + g, q, 0, cpg, opg, adjoint) * nf + f;
    out[idx] = spectral_dot(x, nf, s, spectrum_plane_step(cpg, adjoint) * nf, spg, adjoint);
  }
}

template <typename T>
__global__ void crop_store_kernel(const T* __restrict__ buf, T* __restrict__ dst, const T* __restrict__ bias,
                                  int64_t b0, int64_t per_batch, int64_t c0, int64_t dst_c, int64_t out_h,
                                  int64_t out_w, int64_t n_w, int64_t step_w, int64_t total) {
  FFTCONV_GRID_STRIDE(idx, total) {
    const int64_t j = idx % out_w;
    const int64_t i = (idx / out_w) % out_h;
    const int64_t q = idx / (out_w * out_h);
    const int64_t b = b0 + q / per_batch;
    const int64_t c = c0 + q % per_batch;
    const T bias_c = bias ? bias[c] : T(0);
    dst[((b * dst_c + c) * out_h + i) * out_w + j] =
        crop_store_value(buf + q * out_h * n_w, n_w, int64_t(1), step_w, i, j, bias_c);
  }
}

// acc[(g*opg + o)*cpg + c] += sum_b X[b, g, c] * conj(G[b, g, o])  (rule 9)
template <typename T>
__global__ void weight_correlation_kernel(const Complex<T>* __restrict__ X, const Complex<T>* __restrict__ G,
                                          Complex<T>* __restrict__ acc, int64_t nb, int64_t ng, int64_t cpg,
                                          int64_t opg, int64_t nf, int64_t total) {
  FFTCONV_GRID_STRIDE(idx, total) {
    const int64_t f = idx % nf;
    const int64_t c = (idx / nf) % cpg;
    const int64_t o = (idx / (nf * cpg)) % opg;
    const int64_t g = idx / (nf * cpg * opg);
    Complex<T> a = acc[idx];
    for (int64_t b = 0; b < nb; ++b) {
      const Complex<T> v = cmul_conj(X[((b * ng + g) * cpg + c) * nf + f], G[((b * ng + g) * opg + o) * nf + f]);
      a.re += v.re;
      a.im += v.im;
    }
    acc[idx] = a;
  }
}

template <typename T>
__global__ void gather_taps_kernel(const T* __restrict__ r, T* __restrict__ gw, AxisPlan ph, AxisPlan pw,
                                   int64_t kh, int64_t kw, int64_t n_w, T scale, int64_t total) {
  FFTCONV_GRID_STRIDE(idx, total) {
    const int64_t tw = idx % pw.tap_count;
    const int64_t th = (idx / pw.tap_count) % ph.tap_count;
    const int64_t q = idx / (pw.tap_count * ph.tap_count);
    gw[(q * kh + ph.tap_begin + th) * kw + pw.tap_begin + tw] =
        scale * gather_tap_value(r + q * ph.n_fft * n_w, n_w, ph, pw, th, tw);
  }
}

#define FFTCONV_LAUNCH(kernel, n, ...)                                                          \
  do {                                                                                          \
    if ((n) > 0) {                                                                              \
      kernel<<<grid_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(__VA_ARGS__, (n)); \
      C10_CUDA_KERNEL_LAUNCH_CHECK();                                                           \
    }                                                                                           \
  } while (0)

// ---- stages ----------------------------------------------------------------

template <typename T>
void run_fft(cuda::FftKind kind, int64_t n, int64_t batch, void* in, void* out, bool forward,
             const at::TensorOptions& opts) {
  if (batch == 0) return;
  auto plan = cuda::get_plan(opts.device().index(), kind, std::is_same<T, double>::value, n, batch);
  cuda::exec_plan(*plan, kind, std::is_same<T, double>::value, in, out, forward, opts);
}

// Spectra (P, n_w/2+1, n_h), column-major planes, of a block's planes (rule 4).
template <typename T>
at::Tensor block_spectra(const at::Tensor& src, const PlaneSource& s, const ConvPlan2d& p, int64_t b0,
                         int64_t nb, int64_t g0, int64_t ng) {
  const int64_t per_batch = ng * s.planes_per_group, planes = nb * per_batch;
  const int64_t n_h = p.h.n_fft, n_w = p.w.n_fft, nfw = p.n_freq_w, rows = s.rows_used;
  const auto real_opts = src.options();
  const auto cplx_opts = real_opts.dtype(c10::toComplexType(src.scalar_type()));
  at::Tensor real = at::empty({planes, rows, n_w}, real_opts);
  FFTCONV_LAUNCH(pad_load_kernel<T>, planes * rows * n_w, src.data_ptr<T>(), real.data_ptr<T>(), s, b0, g0,
                 per_batch, n_w);
  at::Tensor spec = at::empty({planes, rows, nfw}, cplx_opts);
  run_fft<T>(cuda::FftKind::R2C, n_w, planes * rows, real.data_ptr(), spec.data_ptr(), true, real_opts);
  if (n_h == 1) return spec.view({planes, nfw, 1});
  at::Tensor cols = at::empty({planes, nfw, n_h}, cplx_opts);
  FFTCONV_LAUNCH(transpose_pad_kernel<T>, planes * nfw * n_h, reinterpret_cast<Complex<T>*>(spec.data_ptr()),
                 reinterpret_cast<Complex<T>*>(cols.data_ptr()), rows, nfw, n_h);
  run_fft<T>(cuda::FftKind::C2C, n_h, planes * nfw, cols.data_ptr(), cols.data_ptr(), true, real_opts);
  return cols;
}

// Inverse of (P, n_w/2+1, n_h) product spectra; rows 0, step, ... (count rows).
// Overwrites `spec`. Returns (P, count, n_w) real.
template <typename T>
at::Tensor block_inverse(at::Tensor& spec, const ConvPlan2d& p, int64_t count, int64_t step,
                         const at::TensorOptions& real_opts) {
  const int64_t planes = spec.size(0), n_h = p.h.n_fft, n_w = p.w.n_fft, nfw = p.n_freq_w;
  at::Tensor rows = spec;
  if (n_h > 1) {
    run_fft<T>(cuda::FftKind::C2C, n_h, planes * nfw, spec.data_ptr(), spec.data_ptr(), false, real_opts);
    rows = at::empty({planes, count, nfw}, spec.options());
    FFTCONV_LAUNCH(transpose_select_kernel<T>, planes * count * nfw,
                   reinterpret_cast<Complex<T>*>(spec.data_ptr()), reinterpret_cast<Complex<T>*>(rows.data_ptr()),
                   n_h, nfw, count, step);
  }
  at::Tensor real = at::empty({planes, count, n_w}, real_opts);
  // cuFFT's C2R may overwrite its input: `rows` is ours to clobber.
  run_fft<T>(cuda::FftKind::C2R, n_w, planes * count, rows.data_ptr(), real.data_ptr(), false, real_opts);
  return real;
}

template <typename T>
void run_pipeline(const at::Tensor& src, const at::Tensor& spec, const T* bias, at::Tensor& dst,
                  const ConvPlan2d& p, bool adjoint) {
  const PlaneSource s = adjoint ? output_side(p) : input_side(p);
  const int64_t dpg = adjoint ? p.cpg : p.opg;
  const int64_t dst_c = adjoint ? p.c_in : p.c_out;
  const int64_t out_h = adjoint ? p.h.in_len : p.h.out_len;
  const int64_t out_w = adjoint ? p.w.in_len : p.w.out_len;
  const int64_t step_h = adjoint ? 1 : p.h.stride;
  const int64_t step_w = adjoint ? 1 : p.w.stride;
  const ChunkShape cs = choose_chunk(p, 2 * sizeof(T), kChunkBytes, 1);
  const auto* spec_ptr = reinterpret_cast<const Complex<T>*>(spec.data_ptr());
  for (int64_t b0 = 0; b0 < p.batch; b0 += cs.batch_block) {
    const int64_t nb = std::min(cs.batch_block, p.batch - b0);
    for (int64_t g0 = 0; g0 < p.groups; g0 += cs.group_block) {
      const int64_t ng = std::min(cs.group_block, p.groups - g0);
      at::Tensor x = block_spectra<T>(src, s, p, b0, nb, g0, ng);
      at::Tensor y = at::empty({nb * ng * dpg, p.n_freq_w, p.h.n_fft}, x.options());
      FFTCONV_LAUNCH(spectral_multiply_kernel<T>, y.numel(), reinterpret_cast<const Complex<T>*>(x.data_ptr()),
                     spec_ptr, reinterpret_cast<Complex<T>*>(y.data_ptr()), ng, g0, p.cpg, p.opg, p.n_freq,
                     adjoint);
      x = at::Tensor();  // free before the inverse
      at::Tensor r = block_inverse<T>(y, p, out_h, step_h, src.options());
      FFTCONV_LAUNCH(crop_store_kernel<T>, nb * ng * dpg * out_h * out_w, r.data_ptr<T>(), dst.data_ptr<T>(), bias,
                     b0, ng * dpg, g0 * dpg, dst_c, out_h, out_w, p.w.n_fft, step_w);
    }
  }
}

template <typename T>
void grad_weight_pipeline(const at::Tensor& input, const at::Tensor& grad_out, at::Tensor& gw,
                          const ConvPlan2d& p) {
  const PlaneSource xs = input_side(p), gs = output_side(p);
  const ChunkShape cs = choose_chunk(p, 2 * sizeof(T), kChunkBytes, 1);
  const auto cplx_opts = input.options().dtype(c10::toComplexType(input.scalar_type()));
  for (int64_t g0 = 0; g0 < p.groups; g0 += cs.group_block) {
    const int64_t ng = std::min(cs.group_block, p.groups - g0);
    at::Tensor acc = at::zeros({ng * p.opg * p.cpg, p.n_freq_w, p.h.n_fft}, cplx_opts);
    for (int64_t b0 = 0; b0 < p.batch; b0 += cs.batch_block) {
      const int64_t nb = std::min(cs.batch_block, p.batch - b0);
      at::Tensor X = block_spectra<T>(input, xs, p, b0, nb, g0, ng);
      at::Tensor G = block_spectra<T>(grad_out, gs, p, b0, nb, g0, ng);
      FFTCONV_LAUNCH(weight_correlation_kernel<T>, acc.numel(), reinterpret_cast<const Complex<T>*>(X.data_ptr()),
                     reinterpret_cast<const Complex<T>*>(G.data_ptr()), reinterpret_cast<Complex<T>*>(acc.data_ptr()),
                     nb, ng, p.cpg, p.opg, p.n_freq);
    }
    at::Tensor r = block_inverse<T>(acc, p, p.h.n_fft, 1, input.options());
    const T scale = T(1) / static_cast<T>(p.h.n_fft * p.w.n_fft);
    FFTCONV_LAUNCH(gather_taps_kernel<T>, ng * p.opg * p.cpg * p.h.tap_count * p.w.tap_count, r.data_ptr<T>(),
                   gw.data_ptr<T>() + g0 * p.opg * p.cpg * p.kernel_h * p.kernel_w, p.h, p.w, p.kernel_h,
                   p.kernel_w, p.w.n_fft, scale);
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
