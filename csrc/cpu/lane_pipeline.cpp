// The lane pipeline (lane_pipeline.h). A task is one group of L consecutive
// planes (L = 8 floats or 4 doubles per 32-byte vector). Planes are (batch,
// channel) pairs, each lane with its own channel's kernel spectrum and bias.
//
// Per group, with S the group's spectra (n_h rows x n_w/2+1 frequencies, one
// vector per value, real and imaginary parts apart):
//   1. each data row: pad-load (even samples to the real parts, odd to the
//      imaginary parts), complex FFT of n_w/2, unpacked to the real row's half
//      spectrum (docs/design.md §4: the zero rows are never transformed);
//   2. each frequency column: FFT along H, product with the kernel spectrum
//      (its conjugate for the input gradient), inverse FFT along H, the kept
//      rows written back;
//   3. each kept row: packed, inverse complex FFT of n_w/2, crop + bias.
//
// The backward (backward_groups) runs the same stages with L channels per
// task over the whole batch (the weight gradient sums over it).
#include "cpu/lane_pipeline.h"
#include "settings.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "core/pointwise.h"
#include "cpu/isa_dispatch.h"
#include "cpu/lane_fft.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"  // 32-byte vectors pass only between force-inlined functions
#endif

namespace fftconv {
namespace cpu {
namespace {

// The transforms of one call (plans, the real-transform rotation), shared by its threads.
template <typename T>
struct LaneTransforms {
  int64_t n_h, m_w, nfw;  // n_w = 2 m_w
  lanes::Plan<T> fwd_w, inv_w, fwd_h, inv_h;  // W: half-length complex transforms
  std::vector<T> rot_re, rot_im;              // e^{-2 pi i k / n_w}, k <= m_w

  explicit LaneTransforms(const ConvGeometry2d& p)
      : n_h(p.h.n_fft), m_w(p.w.n_fft / 2), nfw(p.n_freq_w), fwd_w(m_w, -1), inv_w(m_w, +1), fwd_h(n_h, -1),
        inv_h(n_h, +1) {
    for (int64_t k = 0; k <= m_w; ++k) {
      const double a = -2.0 * M_PI * static_cast<double>(k) / static_cast<double>(p.w.n_fft);
      rot_re.push_back(static_cast<T>(std::cos(a)));
      rot_im.push_back(static_cast<T>(std::sin(a)));
    }
  }
  int64_t longest() const { return std::max(n_h, m_w + 1); }
};

// ---- the stages, on the lanes of a group ------------------------------------
// Buffers hold one vector per value, real and imaginary parts apart. A
// group's half spectra S are row-major, rows x nfw.

// Data rows [0, rows) of plane[l] (lane l < nl) into lane layout: row h's even
// samples at xr_t[(h * m_w + m) * L + l], odd ones at xi_t. Scalar stores, all
// done before any vector load reads them back (a vector load right after the
// scalar stores that build it stalls on store forwarding).
template <typename T>
FFTCONV_LANE_INLINE void load_rows(const T* const* plane, int64_t nl, int64_t rows, int64_t src_w, int64_t m_w,
                                   T* xr_t, T* xi_t) {
  constexpr int64_t L = lanes::Lanes<T>::count;
  for (int64_t l = 0; l < nl; ++l)
    for (int64_t h = 0; h < rows; ++h) {
      const T* row = plane[l] + h * src_w;
      for (int64_t m = 0; m < m_w; ++m) {
        xr_t[(h * m_w + m) * L + l] = pad_load_value(row, src_w, int64_t(1), 2 * m);
        xi_t[(h * m_w + m) * L + l] = pad_load_value(row, src_w, int64_t(1), 2 * m + 1);
      }
    }
}

// Kernel spectra (f, h), f in [f0, f0 + count), of lane l's channel spectrum
// ks[l] (column-major) into lane layout at [(f - f0) * n_h + h] (scalar stores).
template <typename T>
FFTCONV_LANE_INLINE void gather_kernel(const Complex<T>* const* ks, int64_t nl, int64_t n_h, int64_t f0,
                                       int64_t count, T* kr_t, T* ki_t) {
  constexpr int64_t L = lanes::Lanes<T>::count;
  for (int64_t l = 0; l < nl; ++l) {
    const Complex<T>* k = ks[l] + f0 * n_h;
    for (int64_t i = 0; i < count * n_h; ++i) {
      kr_t[i * L + l] = k[i].re;
      ki_t[i * L + l] = k[i].im;
    }
  }
}

// 1. Rows [0, rows) along W: real transforms (half-length complex FFT in
// place in X, unpacked) into the half spectra S (docs/design.md §4: only data rows).
template <typename T, typename V>
FFTCONV_LANE_INLINE void rows_forward(const LaneTransforms<T>& t, V* Xr, V* Xi, int64_t rows, V* Sr, V* Si, V* br,
                                      V* bi) {
  for (int64_t h = 0; h < rows; ++h) {
    V* zr = Xr + h * t.m_w;
    V* zi = Xi + h * t.m_w;
    lanes::fft(t.fwd_w, zr, zi, br, bi);
    lanes::real_forward_unpack(zr, zi, t.m_w, t.rot_re.data(), t.rot_im.data(), Sr + h * t.nfw, Si + h * t.nfw);
  }
}

// 2a. Column f of S (rows [0, rows) hold data, the rest are zero) into
// (ar, ai), transformed along H.
template <typename T, typename V>
FFTCONV_LANE_INLINE void column_forward(const LaneTransforms<T>& t, const V* Sr, const V* Si, int64_t f,
                                        int64_t rows, V* ar, V* ai, V* br, V* bi) {
  const V zero = V{} * T(0);
  for (int64_t h = 0; h < rows; ++h) ar[h] = Sr[h * t.nfw + f], ai[h] = Si[h * t.nfw + f];
  for (int64_t h = rows; h < t.n_h; ++h) ar[h] = zero, ai[h] = zero;  // the zero rows (docs/design.md §4)
  lanes::fft(t.fwd_h, ar, ai, br, bi);
}

// 2b. (ar, ai) times the kernel spectrum column (kr, ki), conjugated for the
// adjoint, in place.
template <typename T, typename V>
FFTCONV_LANE_INLINE void column_product(const LaneTransforms<T>& t, V* ar, V* ai, const V* kr, const V* ki,
                                        bool adjoint) {
  for (int64_t h = 0; h < t.n_h; ++h) {
    const Complex<V> x{ar[h], ai[h]}, k{kr[h], ki[h]};
    const Complex<V> y = adjoint ? cmul_conj(x, k) : cmul(x, k);
    ar[h] = y.re;
    ai[h] = y.im;
  }
}

// 2c. (ar, ai) back along H; rows [0, keep) into column f of S.
template <typename T, typename V>
FFTCONV_LANE_INLINE void column_inverse(const LaneTransforms<T>& t, V* ar, V* ai, V* br, V* bi, V* Sr, V* Si,
                                        int64_t f, int64_t keep) {
  lanes::fft(t.inv_h, ar, ai, br, bi);
  for (int64_t h = 0; h < keep; ++h) Sr[h * t.nfw + f] = ar[h], Si[h * t.nfw + f] = ai[h];
}

// 3. A half-spectrum row (xr, xi) back along W: lane l's sample 2j at
// ((T*)ar)[j * L + l], sample 2j+1 at ((T*)ai)[j * L + l]. Zeroes xi[0] and
// xi[m_w], as a c2r transform ignores them.
template <typename T, typename V>
FFTCONV_LANE_INLINE void row_inverse(const LaneTransforms<T>& t, V* xr, V* xi, V* ar, V* ai, V* br, V* bi) {
  const V zero = V{} * T(0);
  xi[0] = zero;
  xi[t.m_w] = zero;
  lanes::real_inverse_pack(xr, xi, t.m_w, t.rot_re.data(), t.rot_im.data(), ar, ai);
  lanes::fft(t.inv_w, ar, ai, br, bi);
}

// Lane l's samples of the parity of j after row_inverse: sample j at [(j >> 1) * L].
template <typename T, typename V>
FFTCONV_LANE_INLINE const T* row_lane(const V* ar, const V* ai, int64_t l, int64_t j) {
  return reinterpret_cast<const T*>((j & 1) ? ai : ar) + l;
}

// ---- forward and input gradient ----------------------------------------------

// Data rows are loaded and transformed along W this many at a time: a tall
// plane (a depth-folded volume) does not need all its rows in lane layout at
// once; planes up to this tall load whole, as before.
constexpr int64_t kLoadRows = 64;
// Widths (n_w) the lane pipeline takes, and the column length above which a
// problem counts as a folded volume's (lane_pipeline_applies).
constexpr int64_t kMaxRowLength = 256;

template <typename T>
struct LaneCall {
  const T* src;
  T* dst;
  const T* bias;
  const Complex<T>* kspec;  // (channels, n_w/2+1, n_h): column-major planes
  int64_t planes, channels;
  int64_t src_h, src_w, dst_h, dst_w;
  bool adjoint;
  bool whole_kernel;  // the group's kernel spectra gathered at once (small planes) or a column at a time
  const LaneTransforms<T>* t;
};

// A task is a group of L consecutive planes ((batch, channel) pairs), each
// lane with its own channel's kernel spectrum and bias.
template <typename T>
FFTCONV_LANE_INLINE void process_groups(const LaneCall<T>& c, int64_t begin, int64_t end) {
  using V = typename lanes::Lanes<T>::V;
  constexpr int64_t L = lanes::Lanes<T>::count;
  const LaneTransforms<T>& t = *c.t;
  const int64_t n_h = t.n_h, m_w = t.m_w, nfw = t.nfw, nf = n_h * nfw, longest = t.longest();
  const int64_t xsize = std::min(c.src_h, kLoadRows) * m_w;
  const int64_t ksize = c.whole_kernel ? nf : n_h;
  // S, the group's data rows in lane layout, its kernel spectra (all or one
  // column), two transform and two scratch buffers; counted as a PyTorch
  // allocation like the other pipelines' chunks
  at::Tensor work =
      at::empty({(2 * nf + 2 * xsize + 2 * ksize + 4 * longest) * static_cast<int64_t>(sizeof(V))}, at::kByte);
  V* Sr = reinterpret_cast<V*>(work.data_ptr());
  V* Si = Sr + nf;
  V* Xr = Si + nf;
  V* Xi = Xr + xsize;
  V* Kr = Xi + xsize;  // kernel spectrum value (f, h) of every lane at Kr[f * n_h + h] (whole) or Kr[h]
  V* Ki = Kr + ksize;
  V* ar = Ki + ksize;
  V* ai = ar + longest;
  V* br = ai + longest;
  V* bi = br + longest;
  const V zero = V{} * T(0);
  T* kr_t = reinterpret_cast<T*>(Kr);
  T* ki_t = reinterpret_cast<T*>(Ki);

  for (int64_t group = begin; group < end; ++group) {
    const int64_t q0 = group * L;
    const int64_t nl = std::min(L, c.planes - q0);  // lanes in use; the others stay zero
    const Complex<T>* ks[L];
    const T* planes[L];
    for (int64_t l = 0; l < nl; ++l) {
      ks[l] = c.kspec + ((q0 + l) % c.channels) * nf;
      planes[l] = c.src + (q0 + l) * c.src_h * c.src_w;
    }
    if (nl < L) {
      std::fill(Xr, Xr + 2 * xsize, zero);
      std::fill(Kr, Kr + 2 * ksize, zero);
    }
    if (c.whole_kernel) gather_kernel(ks, nl, n_h, 0, nfw, kr_t, ki_t);
    for (int64_t h0 = 0; h0 < c.src_h; h0 += kLoadRows) {
      const int64_t rows = std::min(kLoadRows, c.src_h - h0);
      const T* block[L];
      for (int64_t l = 0; l < nl; ++l) block[l] = planes[l] + h0 * c.src_w;
      load_rows(block, nl, rows, c.src_w, m_w, reinterpret_cast<T*>(Xr), reinterpret_cast<T*>(Xi));
      rows_forward(t, Xr, Xi, rows, Sr + h0 * nfw, Si + h0 * nfw, br, bi);
    }
    for (int64_t f = 0; f < nfw; ++f) {
      // larger planes: the column's kernel spectra now, before the forward
      // transform that gives those stores time to land
      if (!c.whole_kernel) gather_kernel(ks, nl, n_h, f, 1, kr_t, ki_t);
      column_forward(t, Sr, Si, f, c.src_h, ar, ai, br, bi);
      const int64_t k0 = c.whole_kernel ? f * n_h : 0;
      column_product(t, ar, ai, Kr + k0, Ki + k0, c.adjoint);
      column_inverse(t, ar, ai, br, bi, Sr, Si, f, c.dst_h);
    }
    for (int64_t h = 0; h < c.dst_h; ++h) {
      row_inverse(t, Sr + h * nfw, Si + h * nfw, ar, ai, br, bi);
      for (int64_t l = 0; l < nl; ++l) {
        const int64_t plane = q0 + l;
        const T b = c.bias ? c.bias[plane % c.channels] : T(0);
        T* o = c.dst + (plane * c.dst_h + h) * c.dst_w;
        for (int64_t w = 0; w < c.dst_w; ++w)
          o[w] = crop_store_value(row_lane<T>(ar, ai, l, w), L, w >> 1, b);
      }
    }
  }
}

// ---- both gradients -----------------------------------------------------------

template <typename T>
struct LaneBackward {
  const T* x;               // input (batch, channels, in_h, in_w)
  const T* g;               // output gradient (batch, channels, out_h, out_w)
  T* gin;                   // input gradient, or nullptr (the weight gradient only)
  T* gw;                    // weight gradient (channels, 1, kernel_h, kernel_w), zero outside the kept taps
  const Complex<T>* kspec;  // column-major kernel spectra (when gin)
  int64_t batch, channels, in_h, in_w, out_h, out_w, kernel_h, kernel_w;
  AxisGeometry ph, pw;
  bool whole_kernel;
  const LaneTransforms<T>* t;
};

// A task is a group of L consecutive channels over the whole batch: per batch
// element, the input's and the output gradient's spectra (X, G); per column,
// acc += X conj(G) (docs/design.md §9) and, for the input gradient, G conj(K) back along H;
// the input gradient's rows back along W. Then the accumulated correlation's
// rows that hold kept taps go back along W and the taps are read off.
template <typename T>
FFTCONV_LANE_INLINE void backward_groups(const LaneBackward<T>& c, int64_t begin, int64_t end) {
  using V = typename lanes::Lanes<T>::V;
  constexpr int64_t L = lanes::Lanes<T>::count;
  const LaneTransforms<T>& t = *c.t;
  const int64_t n_h = t.n_h, m_w = t.m_w, nfw = t.nfw, nf = n_h * nfw, longest = t.longest();
  const int64_t rows = std::max(c.in_h, c.out_h);
  const int64_t ksize = c.gin == nullptr ? 0 : c.whole_kernel ? nf : n_h;
  at::Tensor work = at::empty(
      {(2 * rows * m_w + 2 * c.in_h * nfw + 2 * rows * nfw + 2 * nf + 2 * ksize + 6 * longest) *
       static_cast<int64_t>(sizeof(V))},
      at::kByte);
  V* Rr = reinterpret_cast<V*>(work.data_ptr());  // data rows in lane layout (load_rows)
  V* Ri = Rr + rows * m_w;
  V* SXr = Ri + rows * m_w;  // the input's half spectra, in_h x nfw
  V* SXi = SXr + c.in_h * nfw;
  V* SGr = SXi + c.in_h * nfw;  // the output gradient's, then the input gradient's, rows x nfw
  V* SGi = SGr + rows * nfw;
  V* Ar = SGi + rows * nfw;  // acc, column-major: (f, h) at f * n_h + h
  V* Ai = Ar + nf;
  V* Kr = Ai + nf;
  V* Ki = Kr + ksize;
  V* xr = Ki + ksize;
  V* xi = xr + longest;
  V* ar = xi + longest;
  V* ai = ar + longest;
  V* br = ai + longest;
  V* bi = br + longest;
  const V zero = V{} * T(0);
  T* kr_t = reinterpret_cast<T*>(Kr);
  T* ki_t = reinterpret_cast<T*>(Ki);
  const T scale = T(1) / static_cast<T>(n_h * 2 * m_w);

  for (int64_t group = begin; group < end; ++group) {
    const int64_t c0 = group * L;
    const int64_t nl = std::min(L, c.channels - c0);
    const Complex<T>* ks[L];
    const T* planes[L];
    if (nl < L) {
      std::fill(Rr, Rr + 2 * rows * m_w, zero);
      if (ksize > 0) std::fill(Kr, Kr + 2 * ksize, zero);
    }
    std::fill(Ar, Ar + 2 * nf, zero);
    if (c.gin != nullptr) {
      for (int64_t l = 0; l < nl; ++l) ks[l] = c.kspec + (c0 + l) * nf;
      if (c.whole_kernel) gather_kernel(ks, nl, n_h, 0, nfw, kr_t, ki_t);
    }
    for (int64_t b = 0; b < c.batch; ++b) {
      for (int64_t l = 0; l < nl; ++l) planes[l] = c.x + (b * c.channels + c0 + l) * c.in_h * c.in_w;
      load_rows(planes, nl, c.in_h, c.in_w, m_w, reinterpret_cast<T*>(Rr), reinterpret_cast<T*>(Ri));
      rows_forward(t, Rr, Ri, c.in_h, SXr, SXi, br, bi);
      for (int64_t l = 0; l < nl; ++l) planes[l] = c.g + (b * c.channels + c0 + l) * c.out_h * c.out_w;
      load_rows(planes, nl, c.out_h, c.out_w, m_w, reinterpret_cast<T*>(Rr), reinterpret_cast<T*>(Ri));
      rows_forward(t, Rr, Ri, c.out_h, SGr, SGi, br, bi);
      for (int64_t f = 0; f < nfw; ++f) {
        if (c.gin != nullptr && !c.whole_kernel) gather_kernel(ks, nl, n_h, f, 1, kr_t, ki_t);
        column_forward(t, SXr, SXi, f, c.in_h, xr, xi, br, bi);
        column_forward(t, SGr, SGi, f, c.out_h, ar, ai, br, bi);
        V* acc_r = Ar + f * n_h;
        V* acc_i = Ai + f * n_h;
        for (int64_t h = 0; h < n_h; ++h) {
          const Complex<V> v = cmul_conj(Complex<V>{xr[h], xi[h]}, Complex<V>{ar[h], ai[h]});
          acc_r[h] += v.re;
          acc_i[h] += v.im;
        }
        if (c.gin == nullptr) continue;
        const int64_t k0 = c.whole_kernel ? f * n_h : 0;
        column_product(t, ar, ai, Kr + k0, Ki + k0, /*adjoint=*/true);
        column_inverse(t, ar, ai, br, bi, SGr, SGi, f, c.in_h);
      }
      if (c.gin == nullptr) continue;
      for (int64_t h = 0; h < c.in_h; ++h) {
        row_inverse(t, SGr + h * nfw, SGi + h * nfw, ar, ai, br, bi);
        for (int64_t l = 0; l < nl; ++l) {
          T* o = c.gin + ((b * c.channels + c0 + l) * c.in_h + h) * c.in_w;
          for (int64_t w = 0; w < c.in_w; ++w) o[w] = crop_store_value(row_lane<T>(ar, ai, l, w), L, w >> 1, T(0));
        }
      }
    }
    // The correlation back along H (every column, in place), then each row
    // holding kept taps back along W.
    for (int64_t f = 0; f < nfw; ++f) {
      V* acc_r = Ar + f * n_h;
      V* acc_i = Ai + f * n_h;
      lanes::fft(t.inv_h, acc_r, acc_i, br, bi);
    }
    for (int64_t th = 0; th < c.ph.tap_count; ++th) {
      const int64_t r = tap_slot(c.ph, th);
      for (int64_t f = 0; f < nfw; ++f) xr[f] = Ar[f * n_h + r], xi[f] = Ai[f * n_h + r];
      row_inverse(t, xr, xi, ar, ai, br, bi);
      for (int64_t l = 0; l < nl; ++l) {
        T* w = c.gw + ((c0 + l) * c.kernel_h + c.ph.tap_begin + th) * c.kernel_w + c.pw.tap_begin;
        for (int64_t tw = 0; tw < c.pw.tap_count; ++tw) {
          const int64_t j = tap_slot(c.pw, tw);
          w[tw] = scale * row_lane<T>(ar, ai, l, j)[(j >> 1) * L];
        }
      }
    }
  }
}

// The task loops, each compiled twice: baseline x86-64 and AVX2+FMA (the
// force-inlined stages take the target of the function they land in), chosen
// at run time.
template <typename T>
FFTCONV_LANE_INLINE void run_groups(const LaneCall<T>& c, int64_t begin, int64_t end) {
  process_groups<T>(c, begin, end);
}
template <typename T>
FFTCONV_LANE_INLINE void run_groups(const LaneBackward<T>& c, int64_t begin, int64_t end) {
  backward_groups<T>(c, begin, end);
}
template <typename Call>
void run_groups_baseline(const Call& c, int64_t begin, int64_t end) {
  run_groups(c, begin, end);
}
#if defined(__GNUC__) && defined(__x86_64__)
template <typename Call>
__attribute__((target("avx2,fma"))) void run_groups_avx2(const Call& c, int64_t begin, int64_t end) {
  run_groups(c, begin, end);
}
#endif

// Tasks [0, tasks) of a call, in parallel.
template <typename Call>
void run_parallel(const Call& c, const ConvGeometry2d& p, int64_t tasks) {
  at::parallel_for(0, tasks, parallel_grain(p, tasks), [&](int64_t begin, int64_t end) {
#if defined(__GNUC__) && defined(__x86_64__)
    if (cpu_has_avx2_fma()) return run_groups_avx2(c, begin, end);
#endif
    run_groups_baseline(c, begin, end);
  });
}

// backends.cpu_lanes = False turns the lane pipeline off (settings.h).
bool lanes_disabled() { return !settings().cpu_lanes.load(std::memory_order_relaxed); }

// Bytes of a thread's work buffers (process_groups): S (2 x n_h x nfw vectors),
// the data rows, the kernel spectra (all, or a column when whole_kernel is
// false) and four transform buffers; 32-byte vectors for float and double alike.
int64_t lane_work_bytes(const ConvGeometry2d& p, bool whole_kernel) {
  const int64_t nf = p.h.n_fft * p.n_freq_w, m_w = p.w.n_fft / 2;
  // (planes' rows counted whole, as the bounds below were measured with)
  const int64_t all_rows = std::max(p.h.in_len, p.h.out_len);
  const int64_t rows = p.h.n_fft > kMaxRowLength ? std::min(all_rows, kLoadRows) : all_rows;
  const int64_t longest = std::max(p.h.n_fft, m_w + 1);
  return (2 * nf + 2 * rows * m_w + 2 * (whole_kernel ? nf : longest) + 4 * longest) * 32;
}

// The group's kernel spectra are gathered at once while the buffers stay this
// small (16x16 and 32x32 planes: measured faster), a column at a time above
// (56x56 and 64x64: faster, and half the buffers).
constexpr int64_t kWholeKernelBytes = int64_t(256) << 10;
bool gathers_whole_kernel(const ConvGeometry2d& p) { return lane_work_bytes(p, true) <= kWholeKernelBytes; }

// A thread's buffers stay within about half an L2 (64x64 planes fit; larger
// ones were not measured and take the chunked pipeline), and all threads'
// together within the output's size (the bound on a forward's extra
// memory is twice the output; small calls get a floor, kMinWorkBytes, as the
// chunked pipeline's chunks do).
constexpr int64_t kMaxWorkBytes = int64_t(512) << 10;
constexpr int64_t kMinWorkBytes = int64_t(256) << 10;
// Columns longer than a plane's (kMaxRowLength: a depth-folded volume,
// docs/design.md §19) take the lane pipeline up to this much per thread: it
// measured 1.07-1.36x faster than the chunked pipeline on the folded problems
// of depthwise 7^3 to 21^3 convolutions on 16^3 to 32^3 volumes (2.4-3 MB).
constexpr int64_t kMaxLongWorkBytes = int64_t(8) << 20;

}  // namespace

namespace {
// Depthwise, stride 1, lengths the lane transforms take (n_w even).
bool lane_pipeline_shape(const ConvGeometry2d& p) {
  return p.cpg == 1 && p.opg == 1 && p.h.stride == 1 && p.w.stride == 1 && p.w.n_fft % 2 == 0 &&
         p.w.n_fft <= kMaxRowLength && lanes::supported_length(p.w.n_fft / 2) &&
         lanes::supported_length(p.h.n_fft);
}
}  // namespace

bool lane_pipeline_applies(const ConvGeometry2d& p) {
  if (!lane_pipeline_shape(p)) return false;
  const int64_t work = lane_work_bytes(p, gathers_whole_kernel(p));
  const int64_t groups = (p.batch * p.c_in + lanes::Lanes<float>::count - 1) / lanes::Lanes<float>::count;
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), groups));
  // smaller of output and input gradient, float32
  const int64_t out_bytes = p.batch * p.c_in * std::min(p.h.out_len * p.w.out_len, p.h.in_len * p.w.in_len) * 4;
  const int64_t cap = p.h.n_fft > kMaxRowLength ? kMaxLongWorkBytes : kMaxWorkBytes;
  return work <= cap && work * threads <= std::max(out_bytes, kMinWorkBytes);
}

int lane_pipeline_mode(const ConvGeometry2d& p) {
  return !lane_pipeline_applies(p) ? 0 : gathers_whole_kernel(p) ? 1 : 2;
}

namespace {

// Bytes of a thread's work buffers in backward_groups.
int64_t backward_work_bytes(const ConvGeometry2d& p, bool input_grad, bool whole_kernel) {
  const int64_t nf = p.h.n_fft * p.n_freq_w, m_w = p.w.n_fft / 2, nfw = p.n_freq_w;
  const int64_t rows = std::max(p.h.in_len, p.h.out_len), longest = std::max(p.h.n_fft, m_w + 1);
  const int64_t ksize = !input_grad ? 0 : whole_kernel ? nf : p.h.n_fft;
  return (2 * rows * m_w + 2 * p.h.in_len * nfw + 2 * rows * nfw + 2 * nf + 2 * ksize + 6 * longest) * 32;
}
bool backward_gathers_whole_kernel(const ConvGeometry2d& p, bool input_grad) {
  return backward_work_bytes(p, input_grad, true) <= kWholeKernelBytes;
}

// The backward keeps three spectra per thread (input, output gradient, the
// accumulated correlation): up to this much (64x64 planes: ~620 KB, in a 1 MB L2).
constexpr int64_t kMaxBackwardWorkBytes = int64_t(768) << 10;

// Tasks are groups of L channels: enough of them to keep every thread busy
// to the end (as many as the threads, a multiple of them, or four per thread).
bool channel_groups_balance(int64_t tasks) {
  const int64_t threads = at::get_num_threads();
  return threads <= 1 || (tasks >= threads && (tasks % threads == 0 || tasks >= 4 * threads));
}

}  // namespace

bool lane_backward_applies(const ConvGeometry2d& p, bool input_grad, int64_t lanes_per_vector) {
  return lane_pipeline_shape(p) &&
         channel_groups_balance((p.c_in + lanes_per_vector - 1) / lanes_per_vector) &&
         backward_work_bytes(p, input_grad, backward_gathers_whole_kernel(p, input_grad)) <= kMaxBackwardWorkBytes;
}

int lane_backward_mode(const ConvGeometry2d& p, bool input_grad, bool float64) {
  if (!lane_backward_applies(p, input_grad, float64 ? lanes::Lanes<double>::count : lanes::Lanes<float>::count))
    return 0;
  return backward_gathers_whole_kernel(p, input_grad) ? 1 : 2;
}

template <typename T>
bool lane_backward(const at::Tensor& input, const at::Tensor& grad_out, const KernelSpectrumSource* spectra,
                   at::Tensor* gin, at::Tensor& gw, const ConvGeometry2d& p) {
  constexpr int64_t L = lanes::Lanes<T>::count;
  const bool input_grad = gin != nullptr;
  if (!lane_backward_applies(p, input_grad, L) || lanes_disabled()) return false;
  if (input_grad && (spectra == nullptr || spectra->made_per_block())) return false;
  const at::Tensor kspec = input_grad ? spectra->groups(0, p.groups) : at::Tensor();
  const LaneTransforms<T> t(p);
  LaneBackward<T> c;
  c.x = input.data_ptr<T>();
  c.g = grad_out.data_ptr<T>();
  c.gin = input_grad ? gin->data_ptr<T>() : nullptr;
  c.gw = gw.data_ptr<T>();
  c.kspec = input_grad ? reinterpret_cast<const Complex<T>*>(kspec.data_ptr()) : nullptr;
  c.batch = p.batch;
  c.channels = p.c_in;
  c.in_h = p.h.in_len;
  c.in_w = p.w.in_len;
  c.out_h = p.h.out_len;
  c.out_w = p.w.out_len;
  c.kernel_h = p.kernel_h;
  c.kernel_w = p.kernel_w;
  c.ph = p.h;
  c.pw = p.w;
  c.whole_kernel = backward_gathers_whole_kernel(p, input_grad);
  c.t = &t;
  run_parallel(c, p, (p.c_in + L - 1) / L);
  return true;
}

template bool lane_backward<float>(const at::Tensor&, const at::Tensor&, const KernelSpectrumSource*, at::Tensor*,
                                   at::Tensor&, const ConvGeometry2d&);
template bool lane_backward<double>(const at::Tensor&, const at::Tensor&, const KernelSpectrumSource*, at::Tensor*,
                                    at::Tensor&, const ConvGeometry2d&);

template <typename T>
bool lane_pipeline(const at::Tensor& src, const KernelSpectrumSource& spectra, const T* bias, at::Tensor& dst,
                   const ConvGeometry2d& p, bool adjoint) {
  if (!lane_pipeline_applies(p) || spectra.made_per_block() || lanes_disabled()) return false;
  const at::Tensor kspec = spectra.groups(0, p.groups);  // the cached spectrum (a view)
  const LaneTransforms<T> t(p);
  LaneCall<T> c;
  c.src = src.data_ptr<T>();
  c.dst = dst.data_ptr<T>();
  c.bias = bias;
  c.kspec = reinterpret_cast<const Complex<T>*>(kspec.data_ptr());
  c.channels = p.c_in;
  c.planes = p.batch * p.c_in;
  c.src_h = adjoint ? p.h.out_len : p.h.in_len;
  c.src_w = adjoint ? p.w.out_len : p.w.in_len;
  c.dst_h = adjoint ? p.h.in_len : p.h.out_len;
  c.dst_w = adjoint ? p.w.in_len : p.w.out_len;
  c.adjoint = adjoint;
  c.whole_kernel = gathers_whole_kernel(p);
  c.t = &t;
  constexpr int64_t L = lanes::Lanes<T>::count;
  run_parallel(c, p, (c.planes + L - 1) / L);
  return true;
}

template bool lane_pipeline<float>(const at::Tensor&, const KernelSpectrumSource&, const float*, at::Tensor&,
                                   const ConvGeometry2d&, bool);
template bool lane_pipeline<double>(const at::Tensor&, const KernelSpectrumSource&, const double*, at::Tensor&,
                                    const ConvGeometry2d&, bool);

}  // namespace cpu
}  // namespace fftconv
