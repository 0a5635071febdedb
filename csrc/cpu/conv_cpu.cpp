// CPU driver of the fused FFT correlation. Work is cut into chunks of
// (batch block x group block) small enough for the spectra to stay in cache;
// each chunk goes through every stage (pad-load, r2c rows, c2c columns,
// spectral multiply, inverse, crop + bias store) before the next starts, and
// chunks run in parallel. No full-size padded tensor is ever built.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cstdlib>

#include "cpu/conv_cpu.h"
#include "conv/driver.h"
#include "nonfinite/device_check_ops.h"
#include "core/pointwise.h"
#include "cpu/isa_dispatch.h"
#include "cpu/chunk_fft.h"
#include "cpu/lane_pipeline.h"
#include "settings.h"

namespace fftconv {
namespace {

// Spectra bytes per chunk: about one L2 (backends.cpu_chunk_bytes, settings.h).
int64_t chunk_bytes() { return settings().cpu_chunk_bytes.load(std::memory_order_relaxed); }

// The chunk budget of a call writing out_bytes: half the above when a chunk's
// kernel spectra are made beside it (cache off), so the two together take what
// a chunk takes with the cache on; and at most the output spread over the
// threads, so that on small outputs all the threads' chunks together stay
// within the output's size (a forward's extra memory is bounded by twice
// the output). kMinPlanes in choose_chunk still applies.
int64_t chunk_bytes(const KernelSpectrumSource& spectra, int64_t out_bytes, int64_t threads) {
  constexpr int64_t kMinChunkBytes = int64_t(64) << 10;
  const int64_t bytes = spectra.made_per_block() ? chunk_bytes() / 2 : chunk_bytes();
  return std::min(bytes, std::max(kMinChunkBytes, out_bytes / std::max<int64_t>(threads, 1)));
}

// One side of the correlation as a source of planes: the input (forward) or
// the output gradient (zero-stuffed by the stride when loaded).
struct PlaneSource {
  int64_t channels;          // channels of the source tensor
  int64_t planes_per_group;  // cpg for the input, opg for the output side
  int64_t src_h, src_w;
  int64_t step_h, step_w;
  int64_t rows_used;         // rows of the FFT buffer that can be nonzero
};

PlaneSource input_side(const ConvGeometry2d& p) {
  return {p.c_in, p.cpg, p.h.in_len, p.w.in_len, 1, 1, p.h.in_len};
}

PlaneSource output_side(const ConvGeometry2d& p) {
  return {p.c_out, p.opg, p.h.out_len, p.w.out_len, p.h.stride, p.w.stride, p.h.dense_len};
}

// Spectra (nb * ng * planes_per_group, n_w/2+1, n_h) of a chunk's planes,
// column-major per plane (pointwise.h). Rule 4: only rows that can hold data
// are transformed along W; the zero rows are added while transposing.
template <typename T>
at::Tensor chunk_spectra(const T* src, const PlaneSource& s, const ConvGeometry2d& p, int64_t b0,
                         int64_t nb, int64_t g0, int64_t ng, const at::TensorOptions& real_opts) {
  const int64_t per_batch = ng * s.planes_per_group;
  const int64_t planes = nb * per_batch;
  const int64_t n_h = p.h.n_fft, n_w = p.w.n_fft, rows = s.rows_used;
  at::Tensor real = at::empty({planes, rows, n_w}, real_opts);
  T* buf = real.data_ptr<T>();
  for (int64_t q = 0; q < planes; ++q) {
    const int64_t b = b0 + q / per_batch;
    const int64_t c = g0 * s.planes_per_group + q % per_batch;
    const T* plane = src + (b * s.channels + c) * s.src_h * s.src_w;
    T* dst = buf + q * rows * n_w;
    for (int64_t r = 0; r < rows; ++r) {
      if (r % s.step_h == 0 && r / s.step_h < s.src_h) {
        pad_load_row(dst + r * n_w, plane + (r / s.step_h) * s.src_w, s.src_w, s.step_w, n_w);
      } else {
        pad_load_row(dst + r * n_w, plane, 0, 1, n_w);  // an all-zero row
      }
    }
  }
  return cpu::forward_spectra(std::move(real), n_h);
}

// Inverse transform of a chunk's product spectra (column-major planes),
// keeping rows 0, step, ..., (count-1)*step; the c2r runs on
// kept rows only (docs/design.md §4). Returns (P, count, n_w) real, contiguous.
at::Tensor chunk_inverse(at::Tensor spec, const ConvGeometry2d& p, int64_t count, int64_t step) {
  return cpu::inverse_rows(std::move(spec), count, step, p.w.n_fft);
}

// Y = S X (forward) or X = S^H Y (adjoint) for the planes of one chunk (rule
// 6); spec holds the kernel spectra of the chunk's ng groups.
// Depthwise, in place: x[f] *= s[f] (or conj(s[f])) over n values. Its own
// loop with restrict pointers because the general one below reads and writes
// the same buffer, which keeps the compiler from vectorising it (measured: the
// multiply and crop were 10% of a 2x384x16x16 k31 call).
//
// The build targets baseline x86-64 (SSE2), where a complex product costs a
// handful of shuffles per two values; on CPUs with AVX2 and FMA the same loop,
// compiled for them, runs instead (chosen once at run time).
#if defined(__GNUC__)
#define FFTCONV_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define FFTCONV_ALWAYS_INLINE inline
#endif

// The loop, inlined into each caller so that it is compiled for the caller's target.
template <typename T, bool kAdjoint>
FFTCONV_ALWAYS_INLINE void multiply_loop(Complex<T>* __restrict__ x, const Complex<T>* __restrict__ s, int64_t n) {
#pragma omp simd
  for (int64_t f = 0; f < n; ++f) x[f] = kAdjoint ? cmul_conj(x[f], s[f]) : cmul(x[f], s[f]);
}

#if defined(__GNUC__) && defined(__x86_64__)
template <typename T, bool kAdjoint>
__attribute__((target("avx2,fma"))) void multiply_loop_avx2(Complex<T>* x, const Complex<T>* s, int64_t n) {
  multiply_loop<T, kAdjoint>(x, s, n);
}
#endif

template <typename T, bool kAdjoint>
void multiply_in_place(Complex<T>* x, const Complex<T>* s, int64_t n) {
#if defined(__GNUC__) && defined(__x86_64__)
  if (cpu::cpu_has_avx2_fma()) return multiply_loop_avx2<T, kAdjoint>(x, s, n);
#endif
  multiply_loop<T, kAdjoint>(x, s, n);
}

template <typename T>
void spectral_multiply_chunk(const Complex<T>* in, const Complex<T>* spec, Complex<T>* out,
                             const ConvGeometry2d& p, int64_t nb, int64_t ng, bool adjoint) {
  if (in == out && p.cpg == 1 && p.opg == 1) {  // depthwise: batch b's planes pair with spec's ng planes
    for (int64_t b = 0; b < nb; ++b) {
      Complex<T>* x = out + b * ng * p.n_freq;
      if (adjoint) {
        multiply_in_place<T, true>(x, spec, ng * p.n_freq);
      } else {
        multiply_in_place<T, false>(x, spec, ng * p.n_freq);
      }
    }
    return;
  }
  const int64_t spg = adjoint ? p.opg : p.cpg;  // planes summed per output
  const int64_t dpg = adjoint ? p.cpg : p.opg;  // outputs per group
  const int64_t nf = p.n_freq;
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t g = 0; g < ng; ++g) {
      const Complex<T>* x0 = in + (b * ng + g) * spg * nf;
      for (int64_t q = 0; q < dpg; ++q) {
        Complex<T>* y = out + ((b * ng + g) * dpg + q) * nf;
        const int64_t s_base = spectrum_plane(g, q, 0, p.cpg, p.opg, adjoint);
        const int64_t s_step = spectrum_plane_step(p.cpg, adjoint);
        for (int64_t k = 0; k < spg; ++k) {
          const Complex<T>* x = x0 + k * nf;
          const Complex<T>* s = spec + (s_base + k * s_step) * nf;
          if (k == 0) {
            if (adjoint) {
              for (int64_t f = 0; f < nf; ++f) y[f] = cmul_conj(x[f], s[f]);
            } else {
              for (int64_t f = 0; f < nf; ++f) y[f] = cmul(x[f], s[f]);
            }
          } else {
            for (int64_t f = 0; f < nf; ++f) {
              const Complex<T> v = adjoint ? cmul_conj(x[f], s[f]) : cmul(x[f], s[f]);
              y[f].re += v.re;
              y[f].im += v.im;
            }
          }
        }
      }
    }
  }
}

template <typename T>
const Complex<T>* as_complex(const at::Tensor& t) {
  return reinterpret_cast<const Complex<T>*>(t.data_ptr());
}
template <typename T>
Complex<T>* as_complex_mut(at::Tensor& t) {
  return reinterpret_cast<Complex<T>*>(t.data_ptr());
}

// Crop (+ bias) of a chunk's kept rows (P, out_h, n_w) into the destination
// planes: dpg planes per group, dst_c channels, every step_w-th column.
template <typename T>
void store_chunk(const T* rp, T* dst_ptr, const T* bias, int64_t b0, int64_t nb, int64_t g0, int64_t ng,
                 int64_t dpg, int64_t dst_c, int64_t out_h, int64_t out_w, int64_t n_w, int64_t step_w) {
  const int64_t per_batch = ng * dpg;
  for (int64_t q = 0; q < nb * per_batch; ++q) {
    const int64_t b = b0 + q / per_batch;
    const int64_t c = g0 * dpg + q % per_batch;
    const T bias_c = bias ? bias[c] : T(0);
    const T* plane = rp + q * out_h * n_w;
    T* o = dst_ptr + (b * dst_c + c) * out_h * out_w;
    for (int64_t i = 0; i < out_h; ++i) {
      if (step_w == 1) {  // a constant column step: a vectorisable row copy
        for (int64_t j = 0; j < out_w; ++j)
          o[i * out_w + j] = crop_store_value(plane, n_w, int64_t(1), int64_t(1), i, j, bias_c);
      } else {
        for (int64_t j = 0; j < out_w; ++j)
          o[i * out_w + j] = crop_store_value(plane, n_w, int64_t(1), step_w, i, j, bias_c);
      }
    }
  }
}

// acc[g][o][c] += X[b][g][c] * conj(G[b][g][o]) over a chunk's batch (docs/design.md §9).
template <typename T>
void accumulate_weight_spectra(Complex<T>* a, const Complex<T>* xp, const Complex<T>* gp, const ConvGeometry2d& p,
                               int64_t nb, int64_t ng) {
  const int64_t nf = p.n_freq;
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t g = 0; g < ng; ++g)
      for (int64_t o = 0; o < p.opg; ++o)
        for (int64_t c = 0; c < p.cpg; ++c) {
          Complex<T>* ap = a + ((g * p.opg + o) * p.cpg + c) * nf;
          const Complex<T>* x = xp + ((b * ng + g) * p.cpg + c) * nf;
          const Complex<T>* gg = gp + ((b * ng + g) * p.opg + o) * nf;
          for (int64_t f = 0; f < nf; ++f) {
            const Complex<T> v = cmul_conj(x[f], gg[f]);
            ap[f].re += v.re;
            ap[f].im += v.im;
          }
        }
}

// Inverse of a group block's accumulated spectra and the kept taps written to
// the weight gradient.
template <typename T>
void store_weight_taps(at::Tensor acc, T* gw_ptr, const ConvGeometry2d& p, int64_t g0, int64_t ng) {
  const int64_t kh = p.kernel_h, kw = p.kernel_w;
  const T scale = T(1) / static_cast<T>(p.h.n_fft * p.w.n_fft);
  at::Tensor r = chunk_inverse(std::move(acc), p, p.h.n_fft, 1);
  const T* rp = r.data_ptr<T>();
  for (int64_t q = 0; q < ng * p.opg * p.cpg; ++q) {
    const T* plane = rp + q * p.h.n_fft * p.w.n_fft;
    T* w = gw_ptr + (g0 * p.opg * p.cpg + q) * kh * kw;
    for (int64_t th = 0; th < p.h.tap_count; ++th)
      for (int64_t tw = 0; tw < p.w.tap_count; ++tw)
        w[(p.h.tap_begin + th) * kw + p.w.tap_begin + tw] = scale * gather_tap_value(plane, p.w.n_fft, p.h, p.w, th, tw);
  }
}

// Forward (adjoint == false): src = input, dst = output, crop every stride.
// Input gradient (adjoint == true): src = grad_output, dst = grad_input.
// Chunks run group block by group block (batch blocks inner), so a worker
// fetches a group block's kernel spectra once for all its batch blocks.
template <typename T>
void run_pipeline(const at::Tensor& src, const KernelSpectrumSource& spectra, const T* bias, at::Tensor& dst,
                  const ConvGeometry2d& p, bool adjoint) {
  const PlaneSource s = adjoint ? output_side(p) : input_side(p);
  const int64_t dpg = adjoint ? p.cpg : p.opg;
  const int64_t dst_c = adjoint ? p.c_in : p.c_out;
  const int64_t out_h = adjoint ? p.h.in_len : p.h.out_len;
  const int64_t out_w = adjoint ? p.w.in_len : p.w.out_len;
  const int64_t step_h = adjoint ? 1 : p.h.stride;
  const int64_t step_w = adjoint ? 1 : p.w.stride;
  const int64_t n_w = p.w.n_fft;

  const int64_t threads = at::get_num_threads();
  const int64_t out_bytes = dst.numel() * static_cast<int64_t>(sizeof(T));
  const ChunkShape cs = choose_chunk(p, 2 * sizeof(T), chunk_bytes(spectra, out_bytes, threads), threads);
  const int64_t n_bb = (p.batch + cs.batch_block - 1) / cs.batch_block;
  const int64_t n_gb = (p.groups + cs.group_block - 1) / cs.group_block;
  const T* src_ptr = src.data_ptr<T>();
  T* dst_ptr = dst.data_ptr<T>();
  const auto real_opts = src.options();

  at::parallel_for(0, n_bb * n_gb, cpu::parallel_grain(p, n_bb * n_gb), [&](int64_t begin, int64_t end) {
    at::Tensor kspec;  // the current group block's kernel spectra
    int64_t kspec_g0 = -1;
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int64_t g0 = (chunk / n_bb) * cs.group_block;
      const int64_t b0 = (chunk % n_bb) * cs.batch_block;
      const int64_t nb = std::min(cs.batch_block, p.batch - b0);
      const int64_t ng = std::min(cs.group_block, p.groups - g0);
      if (g0 != kspec_g0) {
        kspec = spectra.groups(g0, ng);
        kspec_g0 = g0;
      }
      at::Tensor x = chunk_spectra<T>(src_ptr, s, p, b0, nb, g0, ng, real_opts);
      // Depthwise: one product per frequency, computed in place (one buffer fewer).
      const bool in_place = p.cpg == 1 && p.opg == 1;
      at::Tensor y = in_place ? x : at::empty({nb * ng * dpg, p.n_freq_w, p.h.n_fft}, x.options());
      spectral_multiply_chunk<T>(as_complex<T>(x), as_complex<T>(kspec), as_complex_mut<T>(y), p, nb, ng, adjoint);
      x.reset();
      at::Tensor r = chunk_inverse(std::move(y), p, out_h, step_h);
      store_chunk<T>(r.data_ptr<T>(), dst_ptr, bias, b0, nb, g0, ng, dpg, dst_c, out_h, out_w, n_w, step_w);
    }
  });
}

// grad_weight[o][c] = taps of the circular correlation of input c with the
// (zero-stuffed) output gradient o, summed over the batch (docs/design.md §9).
template <typename T>
void grad_weight_pipeline(const at::Tensor& input, const at::Tensor& grad_out, at::Tensor& gw,
                          const ConvGeometry2d& p) {
  const PlaneSource xs = input_side(p), gs = output_side(p);
  const ChunkShape cs = choose_chunk(p, 2 * sizeof(T), chunk_bytes(), at::get_num_threads());
  const int64_t n_gb = (p.groups + cs.group_block - 1) / cs.group_block;
  const T* x_ptr = input.data_ptr<T>();
  const T* g_ptr = grad_out.data_ptr<T>();
  T* gw_ptr = gw.data_ptr<T>();
  const auto real_opts = input.options();

  at::parallel_for(0, n_gb, cpu::parallel_grain(p, n_gb), [&](int64_t begin, int64_t end) {
    for (int64_t gchunk = begin; gchunk < end; ++gchunk) {
      const int64_t g0 = gchunk * cs.group_block;
      const int64_t ng = std::min(cs.group_block, p.groups - g0);
      at::Tensor acc = at::zeros({ng * p.opg * p.cpg, p.n_freq_w, p.h.n_fft},
                                 real_opts.dtype(c10::toComplexType(input.scalar_type())));
      for (int64_t b0 = 0; b0 < p.batch; b0 += cs.batch_block) {
        const int64_t nb = std::min(cs.batch_block, p.batch - b0);
        at::Tensor X = chunk_spectra<T>(x_ptr, xs, p, b0, nb, g0, ng, real_opts);
        at::Tensor G = chunk_spectra<T>(g_ptr, gs, p, b0, nb, g0, ng, real_opts);
        accumulate_weight_spectra<T>(as_complex_mut<T>(acc), as_complex<T>(X), as_complex<T>(G), p, nb, ng);
      }
      store_weight_taps<T>(std::move(acc), gw_ptr, p, g0, ng);
    }
  });
}

// Both gradients in one pass: per chunk the output gradient's spectra G serve
// the weight gradient (with the input's spectra) and then, multiplied by the
// kernel spectrum, the input gradient: one transform of G instead of two.
// Parallel over group blocks (the weight gradient sums over the batch), so it
// declines (returns false) when there are too few groups to keep the threads
// busy; the caller then runs the two pipelines.
template <typename T>
bool joint_backward(const at::Tensor& input, const at::Tensor& grad_out, const KernelSpectrumSource& spectra,
                    at::Tensor& gin, at::Tensor& gw, const ConvGeometry2d& p) {
  const int64_t threads = at::get_num_threads();
  const int64_t gin_bytes = gin.numel() * static_cast<int64_t>(sizeof(T));
  const ChunkShape cs = choose_chunk(p, 2 * sizeof(T), chunk_bytes(spectra, gin_bytes, threads), threads);
  int64_t gb = cs.group_block;
  while (gb > 1 && (p.groups + gb - 1) / gb < 2 * threads) gb = (gb + 1) / 2;
  const int64_t n_gb = (p.groups + gb - 1) / gb;
  const int64_t grain = cpu::parallel_grain(p, n_gb);
  if (threads > 1 && grain == 1 && n_gb < threads) return false;
  const int64_t bb = std::min(p.batch, std::max<int64_t>(1, cs.batch_block * cs.group_block / gb));
  const PlaneSource xs = input_side(p), gs = output_side(p);
  const T* x_ptr = input.data_ptr<T>();
  const T* g_ptr = grad_out.data_ptr<T>();
  T* gin_ptr = gin.data_ptr<T>();
  T* gw_ptr = gw.data_ptr<T>();
  const auto real_opts = input.options();
  const auto cplx_opts = real_opts.dtype(c10::toComplexType(input.scalar_type()));

  at::parallel_for(0, n_gb, grain, [&](int64_t begin, int64_t end) {
    for (int64_t gchunk = begin; gchunk < end; ++gchunk) {
      const int64_t g0 = gchunk * gb;
      const int64_t ng = std::min(gb, p.groups - g0);
      at::Tensor acc = at::zeros({ng * p.opg * p.cpg, p.n_freq_w, p.h.n_fft}, cplx_opts);
      const at::Tensor kspec = spectra.groups(g0, ng);
      for (int64_t b0 = 0; b0 < p.batch; b0 += bb) {
        const int64_t nb = std::min(bb, p.batch - b0);
        at::Tensor G = chunk_spectra<T>(g_ptr, gs, p, b0, nb, g0, ng, real_opts);
        {
          at::Tensor X = chunk_spectra<T>(x_ptr, xs, p, b0, nb, g0, ng, real_opts);
          accumulate_weight_spectra<T>(as_complex_mut<T>(acc), as_complex<T>(X), as_complex<T>(G), p, nb, ng);
        }
        const bool in_place = p.cpg == 1 && p.opg == 1;
        at::Tensor y = in_place ? G : at::empty({nb * ng * p.cpg, p.n_freq_w, p.h.n_fft}, cplx_opts);
        spectral_multiply_chunk<T>(as_complex<T>(G), as_complex<T>(kspec), as_complex_mut<T>(y), p, nb, ng,
                                   /*adjoint=*/true);
        G.reset();
        at::Tensor r = chunk_inverse(std::move(y), p, p.h.in_len, 1);
        store_chunk<T>(r.data_ptr<T>(), gin_ptr, nullptr, b0, nb, g0, ng, p.cpg, p.c_in, p.h.in_len, p.w.in_len,
                       p.w.n_fft, 1);
      }
      store_weight_taps<T>(std::move(acc), gw_ptr, p, g0, ng);
    }
  });
  return true;
}

struct CpuDriver {
  static constexpr at::DeviceType device_type = at::kCPU;
  struct Guard {
    explicit Guard(at::Device) {}
  };
  static ConvGeometry2d geometry_for(const ConvGeometry2d& p, at::ScalarType) { return p; }  // the alias-free lengths
  // off by default: a host check costs no wait here
  static bool device_checks() { return device_checks_on(/*driver_default=*/false); }
  static void flag(const at::Tensor& a, const at::Tensor* b, at::Tensor& f) { flag_cpu(a, b, f); }
  static void direct_where_flagged(const at::Tensor& f, const DirectProblem& d, const at::Tensor& x,
                                   const at::Tensor& w, const at::Tensor& bias, at::Tensor& out) {
    direct_where_flagged_cpu(f, d, x, w, bias, out);
  }
  template <typename T>
  static bool pipeline(const at::Tensor& src, const KernelSpectrumSource& spectra, const T* bias, at::Tensor& dst,
                       const ConvGeometry2d& p, bool adjoint, int* /*nonfinite: never flagged here*/ = nullptr) {
    if (!cpu::lane_pipeline<T>(src, spectra, bias, dst, p, adjoint))  // small depthwise planes
      run_pipeline<T>(src, spectra, bias, dst, p, adjoint);
    return false;
  }
  template <typename T>
  static void grad_weight(const at::Tensor& input, const at::Tensor& grad_out, at::Tensor& gw,
                          const ConvGeometry2d& p) {
    if (cpu::lane_backward<T>(input, grad_out, nullptr, nullptr, gw, p)) return;  // small depthwise planes
    grad_weight_pipeline<T>(input, grad_out, gw, p);
  }
  template <typename T>
  static bool backward(const at::Tensor& input, const at::Tensor& grad_out, const KernelSpectrumSource& spectra,
                       at::Tensor& gin, at::Tensor& gw, const ConvGeometry2d& p) {
    if (cpu::lane_backward<T>(input, grad_out, &spectra, &gin, gw, p)) return true;
    return joint_backward<T>(input, grad_out, spectra, gin, gw, p);
  }
};

}  // namespace

at::Tensor conv2d_forward_cpu(const at::Tensor& input, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias, const ConvArgs& a) {
  return forward_entry<CpuDriver>(input, weight, bias, a);
}

at::Tensor conv2d_grad_input_cpu(const at::Tensor& grad_output, const at::Tensor& weight,
                                 at::IntArrayRef input_size, const ConvArgs& a) {
  return grad_input_entry<CpuDriver>(grad_output, weight, input_size, a);
}

at::Tensor conv2d_grad_weight_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                  at::IntArrayRef weight_size, const ConvArgs& a) {
  return grad_weight_entry<CpuDriver>(grad_output, input, weight_size, a);
}

std::tuple<at::Tensor, at::Tensor> conv2d_backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                                       const at::Tensor& weight, const ConvArgs& a) {
  return backward_entry<CpuDriver>(grad_output, input, weight, a);
}

TORCH_LIBRARY_IMPL(fftconv, CPU, m) { register_conv_ops<CpuDriver>(m); }

}  // namespace fftconv
