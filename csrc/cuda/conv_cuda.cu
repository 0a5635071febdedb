// CUDA driver of the fused FFT correlation: the stages of the CPU driver
// (cpu/conv_cpu.cpp), with cuFFT for the transforms and our kernels for the
// pointwise stages (pointwise.h), all on the current stream.
//
// Layout: a block of P planes is kept row-interleaved, (rows, P, n_w) real and
// (n_h, P, n_w/2+1) complex: row r of every plane, then row r+1. The W
// transforms are then one contiguous batch over the data rows only, and the
// H transforms one strided batch (stride P*(n_w/2+1), batch innermost) over
// the columns of all planes, so docs/design.md §4 (no transform of all-zero rows along W,
// only the kept rows back) holds without any transpose through memory.
// Work is cut into batch blocks that fit a memory budget.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <type_traits>

#include "conv/driver.h"
#include "conv/pipeline_choice.h"
#include "nonfinite/device_check_ops.h"
#include "core/pointwise.h"
#include "cuda/cufft_plan_cache.h"
#include "cuda/small_plane/launch.h"
#include "cuda/small_plane/forward.h"
#include "cuda/whole_plane.h"

namespace fftconv {
namespace {

// Spectra bytes per block: half the output's bytes (a block holds its spectra and a real
// buffer of about the same size, so the forward's extra memory stays within the output's
// size), at least 4 MB (fewer, smaller transforms only add launches) and at most 256 MB.
constexpr int64_t kMinChunkBytes = int64_t(4) << 20, kMaxChunkBytesCuda = int64_t(256) << 20;
inline int64_t chunk_budget_bytes(const at::Tensor& dst) {
  const int64_t half = dst.numel() * static_cast<int64_t>(dst.element_size()) / 2;
  return std::min(std::max(half, kMinChunkBytes), kMaxChunkBytesCuda);
}
constexpr int kThreads = 256;
constexpr int64_t kMaxLineBlocks = 4096;

// Kernels run over "lines" (a row of one plane, or a whole plane) with 2-D
// thread blocks: threadIdx.x along a line, threadIdx.y over lines, so that
// short lines (n_w/2+1 = 25 frequencies, say) still fill the block; both
// loops are grid-stride. Indices inside a block have type I: int32_t when
// every offset a kernel forms within its block stays below 2^30 (32-bit
// division is several times cheaper than 64-bit), int64_t otherwise. Offsets
// into the caller's tensors are formed in 64 bits.
inline void line_launch_shape(int64_t lines, int64_t per_line, dim3& grid, dim3& block) {
  const int64_t bx = per_line >= 128 ? 128 : per_line >= 64 ? 64 : 32;
  const int64_t by = kThreads / bx;
  const int64_t gx = std::min<int64_t>((per_line + bx - 1) / bx, 64);
  // A few waves of resident blocks (132 SMs x 8 blocks of 256 threads on an H100/H200);
  // more blocks than that only add block launches, each thread then loops over lines
  // (H200, 31x31 on (32, 384, 32, 32): pad + multiply + crop 504 -> 380 us against up to
  // 65535 blocks of one element per thread).
  const int64_t gy = std::min<int64_t>((lines + by - 1) / by, kMaxLineBlocks);
  block = dim3(static_cast<unsigned>(bx), static_cast<unsigned>(by));
  grid = dim3(static_cast<unsigned>(std::max<int64_t>(gx, 1)), static_cast<unsigned>(std::max<int64_t>(gy, 1)));
}

#define FFTCONV_LINES(I, L, lines)                                                                         \
  for (I L = static_cast<I>(blockIdx.y) * static_cast<I>(blockDim.y) + static_cast<I>(threadIdx.y); \
       L < (lines); L += static_cast<I>(gridDim.y) * static_cast<I>(blockDim.y))
#define FFTCONV_IN_LINE(I, e, per_line)                                                                  \
  for (I e = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); \
       e < (per_line); e += static_cast<I>(blockDim.x) * static_cast<I>(gridDim.x))

// kernel<T, I><<<...>>>(args..., lines, per_line); `bound` is the largest
// offset the kernel forms inside its block, which picks I.
#define FFTCONV_LAUNCH_LINES(kernel, T, lines, per_line, bound, ...)                                      \
  do {                                                                                                    \
    const int64_t lines_ = (lines), per_line_ = (per_line);                                               \
    if (lines_ > 0 && per_line_ > 0) {                                                                    \
      dim3 grid_, block_;                                                                                 \
      line_launch_shape(lines_, per_line_, grid_, block_);                                                \
      const cudaStream_t stream_ = at::cuda::getCurrentCUDAStream();                                      \
      if (std::max<int64_t>((bound), lines_ * per_line_) < (int64_t(1) << 30))                            \
        kernel<T, int32_t><<<grid_, block_, 0, stream_>>>(__VA_ARGS__, static_cast<int32_t>(lines_),      \
                                                          static_cast<int32_t>(per_line_));               \
      else                                                                                                \
        kernel<T, int64_t><<<grid_, block_, 0, stream_>>>(__VA_ARGS__, lines_, per_line_);                \
      C10_CUDA_KERNEL_LAUNCH_CHECK();                                                                     \
    }                                                                                                     \
  } while (0)

// ---- kernels: thin loops around the shared pointwise functions -------------

// Line L = r * P + q of the (rows, P, n_w) padded block: row r of plane q.
template <typename T, typename I>
__global__ void pad_load_kernel(const T* __restrict__ src, T* __restrict__ dst, PlaneSource s, int64_t b0,
                                int64_t c0, int64_t per_batch_, int64_t planes_, I lines, I n_w) {
  const I planes = static_cast<I>(planes_), per_batch = static_cast<I>(per_batch_);
  const I src_h = static_cast<I>(s.src_h), src_w = static_cast<I>(s.src_w);
  const I step_h = static_cast<I>(s.step_h), step_w = static_cast<I>(s.step_w);
  FFTCONV_LINES(I, L, lines) {
    const I r = L / planes, q = L - r * planes;
    const I qb = q / per_batch;
    const int64_t b = b0 + qb, c = c0 + (q - qb * per_batch);
    const T* plane = src + (b * s.channels + c) * s.src_h * s.src_w;
    T* out = dst + static_cast<int64_t>(L) * n_w;
    FFTCONV_IN_LINE(I, m, n_w) { out[m] = pad_load_value_2d(plane, src_h, src_w, step_h, step_w, r, m); }
  }
}

// Line L = r * Pd + qo of the products, qo = (b*ng + g)*dpg + q; in place
// (out == in) when every output plane reads only its own input plane.
template <typename T, typename I>
__global__ void spectral_multiply_kernel(const Complex<T>* in, const Complex<T>* __restrict__ spec,
                                         Complex<T>* out, int64_t ng_, int64_t g0, int64_t cpg, int64_t opg,
                                         int64_t n_h, bool adjoint, I lines, I nfw) {
  const I spg = static_cast<I>(adjoint ? opg : cpg), dpg = static_cast<I>(adjoint ? cpg : opg);
  const I ng = static_cast<I>(ng_);
  const I dst_planes = lines / static_cast<I>(n_h), src_planes = dst_planes / dpg * spg;
  const int64_t n_freq = n_h * static_cast<int64_t>(nfw);
  const int64_t s_step = spectrum_plane_step(cpg, adjoint) * n_freq;
  FFTCONV_LINES(I, L, lines) {
    const I r = L / dst_planes, qo = L - r * dst_planes;
    const I bg = qo / dpg, q = qo - bg * dpg, g = bg % ng;
    const Complex<T>* x = in + (r * src_planes + bg * spg) * nfw;
    const Complex<T>* sp = spec + spectrum_plane(g0 + g, q, 0, cpg, opg, adjoint) * n_freq + r * nfw;
    Complex<T>* y = out + L * nfw;
    FFTCONV_IN_LINE(I, f, nfw) { y[f] = spectral_dot(x + f, static_cast<int64_t>(nfw), sp + f, s_step, spg, adjoint); }
  }
}

// Line L = q * out_h + i: output row i of plane q (batch b0 + q / per_batch,
// channel c0 + q % per_batch), cropped from the (count, Pd, n_w) inverse
// block (every step-th slot) + bias.
// The block is row-interleaved (plane_step n_w, row_step P * n_w) for the row-pruned
// pipeline, plane-major (plane_step n_h * n_w, row_step n_w) for the whole-plane one.
template <typename T, typename I>
__global__ void crop_store_kernel(const T* __restrict__ buf, T* __restrict__ dst, const T* __restrict__ bias,
                                  int64_t b0, int64_t per_batch_, int64_t c0, int64_t dst_c, int64_t out_h_,
                                  int64_t plane_step_, int64_t row_step_, int64_t step_h_, int64_t step_w_, I lines,
                                  I out_w) {
  const I out_h = static_cast<I>(out_h_), per_batch = static_cast<I>(per_batch_);
  const I plane_step = static_cast<I>(plane_step_), row = static_cast<I>(row_step_);
  const I step_h = static_cast<I>(step_h_), step_w = static_cast<I>(step_w_);
  FFTCONV_LINES(I, L, lines) {
    const I q = L / out_h, i = L - q * out_h;
    const I qb = q / per_batch;
    const int64_t b = b0 + qb, c = c0 + (q - qb * per_batch);
    const T bias_c = bias ? bias[c] : T(0);
    const T* plane = buf + q * plane_step;
    T* o = dst + ((b * dst_c + c) * out_h_ + i) * static_cast<int64_t>(out_w);
    FFTCONV_IN_LINE(I, j, out_w) { o[j] = crop_store_value(plane, row, step_h, step_w, i, j, bias_c); }
  }
}

// Whole-plane layout (P, n_h, n_w): line L = q * n_h + r is row r of plane q, padded
// (whole_plane.h, shared with the host emulation).
template <typename T, typename I>
__global__ void pad_planes_kernel(const T* __restrict__ src, T* __restrict__ dst, PlaneSource s, int64_t b0,
                                  int64_t c0, int64_t per_batch_, int64_t n_h_, I lines, I n_w) {
  const I n_h = static_cast<I>(n_h_), per_batch = static_cast<I>(per_batch_);
  FFTCONV_LINES(I, L, lines) {
    T* out = dst + static_cast<int64_t>(L) * n_w;
    FFTCONV_IN_LINE(I, m, n_w) { out[m] = whole_plane::pad_value<T, I>(src, s, b0, c0, per_batch, n_h, L, m); }
  }
}

// Whole-plane layout (P, n_h, n_w/2+1): line L = qo * n_h + r of the products; in place
// (out == in) when every output plane reads only its own input plane.
template <typename T, typename I>
__global__ void spectral_multiply_planes_kernel(const Complex<T>* in, const Complex<T>* __restrict__ spec,
                                                Complex<T>* out, int64_t ng_, int64_t g0, int64_t cpg, int64_t opg,
                                                int64_t n_h_, bool adjoint, I lines, I nfw) {
  const I ng = static_cast<I>(ng_), n_h = static_cast<I>(n_h_);
  FFTCONV_LINES(I, L, lines) {
    Complex<T>* y = out + static_cast<int64_t>(L) * nfw;
    FFTCONV_IN_LINE(I, f, nfw) {
      y[f] = whole_plane::product<T, I>(in, spec, ng, g0, cpg, opg, n_h, nfw, adjoint, L, f);
    }
  }
}

// acc[r, (g*opg + o)*cpg + c] += sum_b X[r, (b*ng + g)*cpg + c] * conj(G[r, (b*ng + g)*opg + o])  (docs/design.md §9)
template <typename T, typename I>
__global__ void weight_correlation_kernel(const Complex<T>* __restrict__ X, const Complex<T>* __restrict__ G,
                                          Complex<T>* __restrict__ acc, int64_t nb_, int64_t ng_, int64_t cpg_,
                                          int64_t opg_, int64_t n_h, I lines, I nfw) {
  const I nb = static_cast<I>(nb_), ng = static_cast<I>(ng_), cpg = static_cast<I>(cpg_), opg = static_cast<I>(opg_);
  const I acc_planes = lines / static_cast<I>(n_h), x_planes = nb * ng * cpg, g_planes = nb * ng * opg;
  FFTCONV_LINES(I, L, lines) {
    const I r = L / acc_planes, qa = L - r * acc_planes;
    const I c = qa % cpg, o = (qa / cpg) % opg, g = qa / (cpg * opg);
    const Complex<T>* xr = X + (r * x_planes + g * cpg + c) * nfw;
    const Complex<T>* gr = G + (r * g_planes + g * opg + o) * nfw;
    const I x_step = ng * cpg * nfw, g_step = ng * opg * nfw;  // next batch element
    Complex<T>* a = acc + L * nfw;
    FFTCONV_IN_LINE(I, f, nfw) {
      Complex<T> sum = a[f];
      for (I b = 0; b < nb; ++b) {
        const Complex<T> v = cmul_conj(xr[b * x_step + f], gr[b * g_step + f]);
        sum.re += v.re;
        sum.im += v.im;
      }
      a[f] = sum;
    }
  }
}

// Taps of weight plane q from the (n_h, A, n_w) circular correlation block.
template <typename T, typename I>
__global__ void gather_taps_kernel(const T* __restrict__ r, T* __restrict__ gw, AxisGeometry ph, AxisGeometry pw,
                                   int64_t kh, int64_t kw, int64_t n_w, T scale, I planes, I per_plane) {
  const int64_t row = n_w * static_cast<int64_t>(planes);
  FFTCONV_LINES(I, q, planes) {
    const T* rp = r + static_cast<int64_t>(q) * n_w;
    T* g = gw + static_cast<int64_t>(q) * kh * kw;
    FFTCONV_IN_LINE(I, e, per_plane) {
      const int64_t th = static_cast<int64_t>(e) / pw.tap_count;
      const int64_t tw = static_cast<int64_t>(e) - th * pw.tap_count;
      g[(ph.tap_begin + th) * kw + pw.tap_begin + tw] = scale * gather_tap_value(rp, row, ph, pw, th, tw);
    }
  }
}

// ---- stages ----------------------------------------------------------------

template <typename T>
void run_fft(cuda::FftKind kind, int64_t n, int64_t batch, int64_t stride, void* in, void* out, bool forward,
             const at::TensorOptions& opts) {
  if (batch == 0) return;
  const bool is_double = std::is_same<T, double>::value;
  auto plan = cuda::get_plan(opts.device().index(), kind, is_double, n, batch, 1, stride);
  cuda::exec_plan(*plan, kind, is_double, in, out, forward, opts);
}

// Spectra (n_h, P, n_w/2+1) of a block's planes: W transforms of the data
// rows, zero rows, H transforms of every column (docs/design.md §4).
template <typename T>
at::Tensor block_spectra(const at::Tensor& src, const PlaneSource& s, const ConvGeometry2d& p, int64_t b0,
                         int64_t nb, int64_t g0, int64_t ng) {
  const int64_t per_batch = ng * s.planes_per_group, planes = nb * per_batch;
  const int64_t n_h = p.h.n_fft, n_w = p.w.n_fft, nfw = p.n_freq_w;
  const int64_t rows = std::min(n_h, std::max<int64_t>(0, (s.src_h - 1) * s.step_h + 1));  // rows holding data
  const auto real_opts = src.options();
  at::Tensor spec = at::empty({n_h, planes, nfw}, real_opts.dtype(c10::toComplexType(src.scalar_type())));
  {
    at::Tensor real = at::empty({rows, planes, n_w}, real_opts);
    FFTCONV_LAUNCH_LINES(pad_load_kernel, T, rows * planes, n_w, s.src_h * s.src_w, src.data_ptr<T>(),
                         real.data_ptr<T>(), s, b0, g0 * s.planes_per_group, per_batch, planes);
    run_fft<T>(cuda::FftKind::R2C, n_w, rows * planes, 0, real.data_ptr(), spec.data_ptr(), true, real_opts);
  }
  if (rows < n_h) spec.narrow(0, rows, n_h - rows).zero_();
  if (n_h > 1)
    run_fft<T>(cuda::FftKind::C2C, n_h, planes * nfw, planes * nfw, spec.data_ptr(), spec.data_ptr(), true,
               real_opts);
  return spec;
}

// Rows 0 .. count-1 of the inverse of (n_h, P, n_w/2+1) product spectra, as
// (count, P, n_w) real. Overwrites `spec` (cuFFT's C2R may clobber its input).
template <typename T>
at::Tensor block_inverse(at::Tensor& spec, const ConvGeometry2d& p, int64_t count, const at::TensorOptions& real_opts) {
  const int64_t planes = spec.size(1), n_h = p.h.n_fft, nfw = p.n_freq_w;
  if (n_h > 1)
    run_fft<T>(cuda::FftKind::C2C, n_h, planes * nfw, planes * nfw, spec.data_ptr(), spec.data_ptr(), false,
               real_opts);
  at::Tensor real = at::empty({count, planes, p.w.n_fft}, real_opts);
  run_fft<T>(cuda::FftKind::C2R, p.w.n_fft, count * planes, 0, spec.data_ptr(), real.data_ptr(), false, real_opts);
  return real;
}

template <typename T>
void run_pipeline(const at::Tensor& src, const at::Tensor& spec, const T* bias, at::Tensor& dst,
                  const ConvGeometry2d& p, bool adjoint) {
  const DirectionSides sides = direction_sides(p, adjoint);
  const PlaneSource& s = sides.src;
  const int64_t spg = sides.spg, dpg = sides.dpg, dst_c = sides.dst_c;
  const int64_t out_h = sides.out_h, out_w = sides.out_w, step_h = sides.step_h, step_w = sides.step_w;
  const int64_t count = std::max<int64_t>(0, (out_h - 1) * step_h + 1);  // rows read back
  const ChunkShape cs = choose_chunk(p, 2 * sizeof(T), chunk_budget_bytes(dst), 1);
  const auto* spec_ptr = reinterpret_cast<const Complex<T>*>(spec.data_ptr());
  for (int64_t b0 = 0; b0 < p.batch; b0 += cs.batch_block) {
    const int64_t nb = std::min(cs.batch_block, p.batch - b0);
    for (int64_t g0 = 0; g0 < p.groups; g0 += cs.group_block) {
      const int64_t ng = std::min(cs.group_block, p.groups - g0);
      const int64_t dst_planes = nb * ng * dpg;
      at::Tensor x = block_spectra<T>(src, s, p, b0, nb, g0, ng);
      at::Tensor y = spg == 1 && dpg == 1 ? x : at::empty({p.h.n_fft, dst_planes, p.n_freq_w}, x.options());
      FFTCONV_LAUNCH_LINES(spectral_multiply_kernel, T, p.h.n_fft * dst_planes, p.n_freq_w,
                           std::max(x.numel(), y.numel()), reinterpret_cast<const Complex<T>*>(x.data_ptr()),
                           spec_ptr, reinterpret_cast<Complex<T>*>(y.data_ptr()), ng, g0, p.cpg, p.opg, p.h.n_fft,
                           adjoint);
      x = at::Tensor();  // free before the inverse (stream-ordered reuse)
      at::Tensor r = block_inverse<T>(y, p, count, src.options());
      y = at::Tensor();
      FFTCONV_LAUNCH_LINES(crop_store_kernel, T, dst_planes * out_h, out_w, r.numel(), r.data_ptr<T>(),
                           dst.data_ptr<T>(), bias, b0, ng * dpg, g0 * dpg, dst_c, out_h, p.w.n_fft,
                           dst_planes * p.w.n_fft, step_h, step_w);
    }
  }
}

// The whole-plane pipeline (docs/design.md §17): per block, the padded planes in one copy,
// one batched 2-D R2C plan (exactly torch.fft.rfft2's transform), the conjugate product (in
// place for depthwise problems), one batched 2-D C2R (irfft2's, unnormalised: the kernel
// spectrum carries 1/(n_h*n_w)), crop + bias in one kernel. No host synchronisation.
template <typename T>
void run_planes_pipeline(const at::Tensor& src, const at::Tensor& spec, const T* bias, at::Tensor& dst,
                         const ConvGeometry2d& p, bool adjoint) {
  const DirectionSides sides = direction_sides(p, adjoint);
  const PlaneSource& s = sides.src;
  const int64_t spg = sides.spg, dpg = sides.dpg, dst_c = sides.dst_c;
  const int64_t out_h = sides.out_h, out_w = sides.out_w, step_h = sides.step_h, step_w = sides.step_w;
  const int64_t n_h = p.h.n_fft, n_w = p.w.n_fft, nfw = p.n_freq_w;
  const ChunkShape cs = choose_chunk(p, 2 * sizeof(T), chunk_budget_bytes(dst), 1);
  const auto* spec_ptr = reinterpret_cast<const Complex<T>*>(spec.data_ptr());
  const auto real_opts = src.options();
  const auto cplx_opts = real_opts.dtype(c10::toComplexType(src.scalar_type()));
  const bool is_double = std::is_same<T, double>::value;
  const int device = real_opts.device().index();
  for (int64_t b0 = 0; b0 < p.batch; b0 += cs.batch_block) {
    const int64_t nb = std::min(cs.batch_block, p.batch - b0);
    for (int64_t g0 = 0; g0 < p.groups; g0 += cs.group_block) {
      const int64_t ng = std::min(cs.group_block, p.groups - g0);
      const int64_t src_planes = nb * ng * spg, dst_planes = nb * ng * dpg;
      at::Tensor x = at::empty({src_planes, n_h, nfw}, cplx_opts);
      {
        at::Tensor real = at::empty({src_planes, n_h, n_w}, real_opts);
        FFTCONV_LAUNCH_LINES(pad_planes_kernel, T, src_planes * n_h, n_w, real.numel(), src.data_ptr<T>(),
                             real.data_ptr<T>(), s, b0, g0 * s.planes_per_group, ng * s.planes_per_group, n_h);
        auto plan = cuda::get_plan(device, cuda::FftKind::R2C, is_double, n_w, src_planes, n_h);
        cuda::exec_plan(*plan, cuda::FftKind::R2C, is_double, real.data_ptr(), x.data_ptr(), true, real_opts);
      }
      at::Tensor y = spg == 1 && dpg == 1 ? x : at::empty({dst_planes, n_h, nfw}, cplx_opts);
      FFTCONV_LAUNCH_LINES(spectral_multiply_planes_kernel, T, dst_planes * n_h, nfw,
                           std::max(x.numel(), y.numel()), reinterpret_cast<const Complex<T>*>(x.data_ptr()),
                           spec_ptr, reinterpret_cast<Complex<T>*>(y.data_ptr()), ng, g0, p.cpg, p.opg, n_h,
                           adjoint);
      x = at::Tensor();  // free before the inverse (stream-ordered reuse)
      at::Tensor r = at::empty({dst_planes, n_h, n_w}, real_opts);
      {
        auto plan = cuda::get_plan(device, cuda::FftKind::C2R, is_double, n_w, dst_planes, n_h);
        cuda::exec_plan(*plan, cuda::FftKind::C2R, is_double, y.data_ptr(), r.data_ptr(), false, real_opts);
      }
      y = at::Tensor();
      FFTCONV_LAUNCH_LINES(crop_store_kernel, T, dst_planes * out_h, out_w, r.numel(), r.data_ptr<T>(),
                           dst.data_ptr<T>(), bias, b0, ng * dpg, g0 * dpg, dst_c, out_h, n_h * n_w, n_w, step_h,
                           step_w);
    }
  }
}

template <typename T>
void grad_weight_pipeline(const at::Tensor& input, const at::Tensor& grad_out, at::Tensor& gw,
                          const ConvGeometry2d& p) {
  const PlaneSource xs = input_side(p), gs = output_side(p);
  const ChunkShape cs = choose_chunk(p, 2 * sizeof(T), chunk_budget_bytes(grad_out), 1);
  const auto cplx_opts = input.options().dtype(c10::toComplexType(input.scalar_type()));
  const int64_t n_h = p.h.n_fft, n_w = p.w.n_fft;
  for (int64_t g0 = 0; g0 < p.groups; g0 += cs.group_block) {
    const int64_t ng = std::min(cs.group_block, p.groups - g0);
    const int64_t acc_planes = ng * p.opg * p.cpg;
    at::Tensor acc = at::zeros({n_h, acc_planes, p.n_freq_w}, cplx_opts);
    for (int64_t b0 = 0; b0 < p.batch; b0 += cs.batch_block) {
      const int64_t nb = std::min(cs.batch_block, p.batch - b0);
      at::Tensor X = block_spectra<T>(input, xs, p, b0, nb, g0, ng);
      at::Tensor G = block_spectra<T>(grad_out, gs, p, b0, nb, g0, ng);
      FFTCONV_LAUNCH_LINES(weight_correlation_kernel, T, n_h * acc_planes, p.n_freq_w,
                           std::max({X.numel(), G.numel(), acc.numel()}),
                           reinterpret_cast<const Complex<T>*>(X.data_ptr()),
                           reinterpret_cast<const Complex<T>*>(G.data_ptr()),
                           reinterpret_cast<Complex<T>*>(acc.data_ptr()), nb, ng, p.cpg, p.opg, n_h);
    }
    at::Tensor r = block_inverse<T>(acc, p, n_h, input.options());
    const T scale = T(1) / static_cast<T>(n_h * n_w);
    FFTCONV_LAUNCH_LINES(gather_taps_kernel, T, acc_planes, p.h.tap_count * p.w.tap_count, r.numel(),
                         r.data_ptr<T>(), gw.data_ptr<T>() + g0 * p.opg * p.cpg * p.kernel_h * p.kernel_w, p.h, p.w,
                         p.kernel_h, p.kernel_w, n_w, scale);
  }
}

// The pipeline a call runs (pipeline_choice.h): SmallPlane where chosen (or opted in with
// backends.cuda_small_plane on an unchosen problem) and the kernel applies, Planes where chosen,
// Rows otherwise. A pipeline whose component has not run on a GPU is never returned unless
// backends.cuda_unverified opts in (verified_on_gpu.h): whatever chose or forced it, the call
// then runs the row-pruned pipeline, which has.
inline Pipeline chosen(const ConvGeometry2d& p, bool is_double, Direction d) {
  Pipeline c = pipeline_for(p, static_cast<int>(c10::cuda::current_device()), is_double, d);
  if (c == Pipeline::Default) c = !is_double && small_plane::enabled() ? Pipeline::SmallPlane : Pipeline::Rows;
  if (c != Pipeline::Rows && !gpu_component_enabled(component_of(c, d))) return Pipeline::Rows;
  return c;
}

struct CudaDriver {
  static constexpr at::DeviceType device_type = at::kCUDA;
  using Guard = c10::cuda::CUDAGuard;
  // Float32 problems that may run the small-plane kernel get the lengths it is
  // compiled for (before the kernel spectrum is made, which every direction shares).
  static ConvGeometry2d geometry_for(const ConvGeometry2d& p, at::ScalarType dtype) {
    if (dtype != at::kFloat) return p;
    for (Direction d : {Direction::Forward, Direction::GradInput, Direction::GradWeight, Direction::Backward})
      if (chosen(p, false, d) == Pipeline::SmallPlane) return small_plane::pad_to_compiled_lengths(p);
    return p;
  }
  // On by default where they have run on a GPU: a host check waits for the device each call
  // (device_checks.h). Off, whatever the setting, while they have not and
  // backends.cuda_unverified is off.
  static bool device_checks() {
    return gpu_component_enabled(GpuComponent::DeviceChecks) && device_checks_on(/*driver_default=*/true);
  }
  static void flag(const at::Tensor& a, const at::Tensor* b, at::Tensor& f) { flag_cuda(a, b, f); }
  static void direct_where_flagged(const at::Tensor& f, const DirectProblem& d, const at::Tensor& x,
                                   const at::Tensor& w, const at::Tensor& bias, at::Tensor& out) {
    direct_where_flagged_cuda(f, d, x, w, bias, out);
  }
  template <typename T>
  static bool pipeline(const at::Tensor& src, const KernelSpectrumSource& spectra, const T* bias, at::Tensor& dst,
                       const ConvGeometry2d& p, bool adjoint, int* nonfinite = nullptr) {
    constexpr bool is_double = std::is_same<T, double>::value;
    const Pipeline c = chosen(p, is_double, adjoint ? Direction::GradInput : Direction::Forward);
    // Whole spectra: the CUDA blocks are large, and memory there is not the constraint.
    if constexpr (std::is_same<T, float>::value)
      if (c == Pipeline::SmallPlane && small_plane::run_small_plane(src, spectra.whole(), bias, dst, p, adjoint, nonfinite))
        return nonfinite != nullptr;  // its load flagged NaN/Inf: no separate pass over src
    if (c == Pipeline::Planes)
      run_planes_pipeline<T>(src, spectra.whole(), bias, dst, p, adjoint);
    else
      run_pipeline<T>(src, spectra.whole(), bias, dst, p, adjoint);
    return false;
  }
  template <typename T>
  static void grad_weight(const at::Tensor& input, const at::Tensor& grad_out, at::Tensor& gw,
                          const ConvGeometry2d& p) {
    if constexpr (std::is_same<T, float>::value)
      if (chosen(p, false, Direction::GradWeight) == Pipeline::SmallPlane &&
          small_plane::run_joint_backward(input, grad_out, nullptr, nullptr, gw, p))
        return;
    grad_weight_pipeline<T>(input, grad_out, gw, p);
  }
  // Both gradients in one pass: the small-plane backward where the joint direction
  // chose it (algo compares it first, see cuda_pipelines.check_joint_backward) or backends.cuda_small_plane
  // opts in, and it applies; otherwise backward_entry runs the two pipelines.
  template <typename T>
  static bool backward(const at::Tensor& input, const at::Tensor& grad_out, const KernelSpectrumSource& spectra,
                       at::Tensor& gin, at::Tensor& gw, const ConvGeometry2d& p) {
    if constexpr (std::is_same<T, float>::value)
      return chosen(p, false, Direction::Backward) == Pipeline::SmallPlane &&
             small_plane::run_joint_backward(input, grad_out, &spectra.whole(), &gin, gw, p);
    return false;
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fftconv, CUDA, m) { register_conv_ops<CudaDriver>(m); }

}  // namespace fftconv
