// The lane pipeline (lane_pipeline.h). A task is one group of L consecutive
// planes (L = 8 floats or 4 doubles per 32-byte vector). Planes are (batch,
// channel) pairs, each lane with its own channel's kernel spectrum and bias.
//
// Per group, with S the group's spectra (n_h rows x n_w/2+1 frequencies, one
// vector per value, real and imaginary parts apart):
//   1. each data row: pad-load (even samples to the real parts, odd to the
//      imaginary parts), complex FFT of n_w/2, unpacked to the real row's half
//      spectrum (rule 4: the zero rows are never transformed);
//   2. each frequency column: FFT along H, product with the kernel spectrum
//      (its conjugate for the input gradient), inverse FFT along H, the kept
//      rows written back;
//   3. each kept row: packed, inverse complex FFT of n_w/2, crop + bias.
#include "lane_pipeline.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "../pointwise.h"
#include "cpu_dispatch.h"
#include "lane_fft.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"  // 32-byte vectors pass only between force-inlined functions
#endif

namespace fftconv {
namespace cpu {
namespace {

template <typename T>
struct LaneCall {
  const T* src;
  T* dst;
  const T* bias;
  const Complex<T>* kspec;  // (channels, n_w/2+1, n_h): column-major planes
  int64_t planes, channels;
  int64_t src_h, src_w, dst_h, dst_w;
  int64_t n_h, m_w, nfw;  // n_w = 2 m_w
  bool adjoint;
  bool whole_kernel;  // the group's kernel spectra gathered at once (small planes) or a column at a time
  lanes::Plan<T> fwd_w, inv_w, fwd_h, inv_h;  // W: half-length complex transforms
  std::vector<T> rot_re, rot_im;              // e^{-2 pi i k / n_w}, k <= m_w
};

template <typename T>
FFTCONV_LANE_INLINE void process_groups(const LaneCall<T>& c, int64_t begin, int64_t end) {
  using V = typename lanes::Lanes<T>::V;
  constexpr int64_t L = lanes::Lanes<T>::count;
  const int64_t n_h = c.n_h, m_w = c.m_w, nfw = c.nfw, nf = n_h * nfw;
  const int64_t longest = std::max(n_h, m_w + 1);
  const int64_t xsize = c.src_h * m_w;
  const int64_t ksize = c.whole_kernel ? nf : longest;
  // S (real, imaginary), the group's data rows in lane layout, its kernel spectra
  // (all or one column), two transform and two scratch buffers; counted as a
  // PyTorch allocation like the other pipelines' chunks
  at::Tensor work =
      at::empty({(2 * nf + 2 * xsize + 2 * ksize + 4 * longest) * static_cast<int64_t>(sizeof(V))}, at::kByte);
  V* Sr = reinterpret_cast<V*>(work.data_ptr());
  V* Si = Sr + nf;
  V* Xr = Si + nf;  // data row h: even samples at Xr[h * m_w + m], odd ones at Xi
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
    for (int64_t l = 0; l < nl; ++l) ks[l] = c.kspec + ((q0 + l) % c.channels) * nf;
    // kernel spectra (f, h) for f in [f0, f0 + nf_) into lane layout (scalar stores)
    const auto gather_kernel = [&](int64_t f0, int64_t count) {
      for (int64_t l = 0; l < nl; ++l) {
        const Complex<T>* k = ks[l] + f0 * n_h;
        for (int64_t i = 0; i < count * n_h; ++i) {
          kr_t[i * L + l] = k[i].re;
          ki_t[i * L + l] = k[i].im;
        }
      }
    };

    // 0. the group's data rows (and, for small planes, kernel spectra) into lane
    // layout, lane by lane: scalar stores, all done before any vector load reads
    // them back (a vector load right after the scalar stores that build it
    // stalls on store forwarding)
    T* xr_t = reinterpret_cast<T*>(Xr);
    T* xi_t = reinterpret_cast<T*>(Xi);
    if (nl < L) {
      std::fill(Xr, Xr + 2 * xsize, zero);
      std::fill(Kr, Kr + 2 * ksize, zero);
    }
    for (int64_t l = 0; l < nl; ++l) {
      const T* plane = c.src + (q0 + l) * c.src_h * c.src_w;
      for (int64_t h = 0; h < c.src_h; ++h) {
        const T* row = plane + h * c.src_w;
        for (int64_t m = 0; m < m_w; ++m) {
          xr_t[(h * m_w + m) * L + l] = pad_load_value(row, c.src_w, int64_t(1), 2 * m);
          xi_t[(h * m_w + m) * L + l] = pad_load_value(row, c.src_w, int64_t(1), 2 * m + 1);
        }
      }
    }
    if (c.whole_kernel) gather_kernel(0, nfw);

    // 1. rows along W (data rows only)
    for (int64_t h = 0; h < c.src_h; ++h) {
      V* zr = Xr + h * m_w;
      V* zi = Xi + h * m_w;
      lanes::fft(c.fwd_w, zr, zi, br, bi);
      lanes::real_forward_unpack(zr, zi, m_w, c.rot_re.data(), c.rot_im.data(), Sr + h * nfw, Si + h * nfw);
    }

    // 2. columns along H: forward, product, inverse
    for (int64_t f = 0; f < nfw; ++f) {
      // larger planes: the column's kernel spectra now, before the forward
      // transform that gives those stores time to land
      if (!c.whole_kernel) gather_kernel(f, 1);
      const V* kr = c.whole_kernel ? Kr + f * n_h : Kr;
      const V* ki = c.whole_kernel ? Ki + f * n_h : Ki;
      for (int64_t h = 0; h < c.src_h; ++h) ar[h] = Sr[h * nfw + f], ai[h] = Si[h * nfw + f];
      for (int64_t h = c.src_h; h < n_h; ++h) ar[h] = zero, ai[h] = zero;  // the zero rows (rule 4)
      lanes::fft(c.fwd_h, ar, ai, br, bi);
      for (int64_t h = 0; h < n_h; ++h) {
        const Complex<V> x{ar[h], ai[h]}, k{kr[h], ki[h]};
        const Complex<V> y = c.adjoint ? cmul_conj(x, k) : cmul(x, k);
        ar[h] = y.re;
        ai[h] = y.im;
      }
      lanes::fft(c.inv_h, ar, ai, br, bi);
      for (int64_t h = 0; h < c.dst_h; ++h) Sr[h * nfw + f] = ar[h], Si[h * nfw + f] = ai[h];
    }

    // 3. kept rows back along W, crop + bias
    const T* even = reinterpret_cast<const T*>(ar);  // x[2j] of lane l at even[j * L + l]
    const T* odd = reinterpret_cast<const T*>(ai);   // x[2j+1] at odd[j * L + l]
    for (int64_t h = 0; h < c.dst_h; ++h) {
      V* xr = Sr + h * nfw;
      V* xi = Si + h * nfw;
      xi[0] = zero;  // as a c2r transform does
      xi[m_w] = zero;
      lanes::real_inverse_pack(xr, xi, m_w, c.rot_re.data(), c.rot_im.data(), ar, ai);
      lanes::fft(c.inv_w, ar, ai, br, bi);
      for (int64_t l = 0; l < nl; ++l) {
        const int64_t plane = q0 + l;
        const T b = c.bias ? c.bias[plane % c.channels] : T(0);
        T* o = c.dst + (plane * c.dst_h + h) * c.dst_w;
        for (int64_t w = 0; w < c.dst_w; ++w)
          o[w] = crop_store_value(((w & 1) ? odd : even) + l, L, static_cast<int64_t>(w >> 1), b);
      }
    }
  }
}

template <typename T>
void process_groups_baseline(const LaneCall<T>& c, int64_t begin, int64_t end) {
  process_groups<T>(c, begin, end);
}

#if defined(__GNUC__) && defined(__x86_64__)
template <typename T>
__attribute__((target("avx2,fma"))) void process_groups_avx2(const LaneCall<T>& c, int64_t begin, int64_t end) {
  process_groups<T>(c, begin, end);
}
#endif

// FFTCONV_CPU_LANES=0 turns the lane pipeline off (read on every call, so that
// tests and benchmarks can compare the two pipelines in one process).
bool lanes_disabled() {
  const char* v = std::getenv("FFTCONV_CPU_LANES");
  return v != nullptr && v[0] == '0';
}

// Bytes of a thread's work buffers (process_groups): S (2 x n_h x nfw vectors),
// the data rows, the kernel spectra (all, or a column when whole_kernel is
// false) and four transform buffers; 32-byte vectors for float and double alike.
int64_t lane_work_bytes(const ConvPlan2d& p, bool whole_kernel) {
  const int64_t nf = p.h.n_fft * p.n_freq_w, m_w = p.w.n_fft / 2;
  const int64_t rows = std::max(p.h.in_len, p.h.out_len), longest = std::max(p.h.n_fft, m_w + 1);
  return (2 * nf + 2 * rows * m_w + 2 * (whole_kernel ? nf : longest) + 4 * longest) * 32;
}

// The group's kernel spectra are gathered at once while the buffers stay this
// small (16x16 and 32x32 planes: measured faster), a column at a time above
// (56x56 and 64x64: faster, and half the buffers).
constexpr int64_t kWholeKernelBytes = int64_t(256) << 10;
bool gathers_whole_kernel(const ConvPlan2d& p) { return lane_work_bytes(p, true) <= kWholeKernelBytes; }

// A thread's buffers stay within about half an L2 (64x64 planes fit; larger
// ones were not measured and take the chunked pipeline), and all threads'
// together within the output's size (issue 3's bound on a forward's extra
// memory is twice the output; small calls get a floor, kMinWorkBytes, as the
// chunked pipeline's chunks do).
constexpr int64_t kMaxWorkBytes = int64_t(512) << 10;
constexpr int64_t kMinWorkBytes = int64_t(256) << 10;

}  // namespace

bool lane_pipeline_applies(const ConvPlan2d& p) {
  if (!(p.cpg == 1 && p.opg == 1 && p.h.stride == 1 && p.w.stride == 1 && p.w.n_fft % 2 == 0 &&
        p.w.n_fft <= lanes::kMaxLength && lanes::supported_length(p.w.n_fft / 2) &&
        lanes::supported_length(p.h.n_fft)))
    return false;
  const int64_t work = lane_work_bytes(p, gathers_whole_kernel(p));
  const int64_t groups = (p.batch * p.c_in + lanes::Lanes<float>::count - 1) / lanes::Lanes<float>::count;
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), groups));
  // smaller of output and input gradient, float32
  const int64_t out_bytes = p.batch * p.c_in * std::min(p.h.out_len * p.w.out_len, p.h.in_len * p.w.in_len) * 4;
  return work <= kMaxWorkBytes && work * threads <= std::max(out_bytes, kMinWorkBytes);
}

int lane_pipeline_mode(const ConvPlan2d& p) {
  return !lane_pipeline_applies(p) ? 0 : gathers_whole_kernel(p) ? 1 : 2;
}

template <typename T>
bool lane_pipeline(const at::Tensor& src, const KernelSpectrumSource& spectra, const T* bias, at::Tensor& dst,
                   const ConvPlan2d& p, bool adjoint) {
  if (!lane_pipeline_applies(p) || spectra.made_per_block() || lanes_disabled()) return false;
  const at::Tensor kspec = spectra.groups(0, p.groups);  // the cached spectrum (a view)
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
  c.n_h = p.h.n_fft;
  c.m_w = p.w.n_fft / 2;
  c.nfw = p.n_freq_w;
  c.adjoint = adjoint;
  c.whole_kernel = gathers_whole_kernel(p);
  c.fwd_w = lanes::Plan<T>(c.m_w, -1);
  c.inv_w = lanes::Plan<T>(c.m_w, +1);
  c.fwd_h = lanes::Plan<T>(c.n_h, -1);
  c.inv_h = lanes::Plan<T>(c.n_h, +1);
  for (int64_t k = 0; k <= c.m_w; ++k) {
    const double a = -2.0 * M_PI * static_cast<double>(k) / static_cast<double>(p.w.n_fft);
    c.rot_re.push_back(static_cast<T>(std::cos(a)));
    c.rot_im.push_back(static_cast<T>(std::sin(a)));
  }
  constexpr int64_t L = lanes::Lanes<T>::count;
  const int64_t groups = (c.planes + L - 1) / L;
  at::parallel_for(0, groups, parallel_grain(p, groups), [&](int64_t begin, int64_t end) {
#if defined(__GNUC__) && defined(__x86_64__)
    if (cpu_has_avx2_fma()) return process_groups_avx2<T>(c, begin, end);
#endif
    process_groups_baseline<T>(c, begin, end);
  });
  return true;
}

template bool lane_pipeline<float>(const at::Tensor&, const KernelSpectrumSource&, const float*, at::Tensor&,
                                   const ConvPlan2d&, bool);
template bool lane_pipeline<double>(const at::Tensor&, const KernelSpectrumSource&, const double*, at::Tensor&,
                                    const ConvPlan2d&, bool);

}  // namespace cpu
}  // namespace fftconv
