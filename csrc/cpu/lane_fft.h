// Small FFTs over the lanes of a vector: one plane per lane (8 floats or 4
// doubles in 32 bytes), so every butterfly is plain vector arithmetic on whole
// vectors, with no shuffles and no transposes, and each twiddle one broadcast
// scalar. Used by the CPU's lane pipeline (lane_pipeline.h) for small planes,
// where a plane's whole 2-D transform, product and inverse fit in cache and
// the per-call and per-pass costs of a general FFT library dominate.
//
// Transforms are self-sorting (Stockham): out of place between two buffers,
// natural order in and out, radices 4, 2, 3, 5 and 7. Unnormalised.
//
// Every function that touches vectors is force-inlined, so that each entry
// point (lane_pipeline.cpp: one for baseline x86-64, one for AVX2+FMA) gets
// its own copy compiled for its instruction set.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace fftconv {
namespace cpu {
namespace lanes {

#if defined(__GNUC__)
#define FFTCONV_LANE_INLINE inline __attribute__((always_inline))
#else
#define FFTCONV_LANE_INLINE inline
#endif

typedef float VecF __attribute__((vector_size(32)));
typedef double VecD __attribute__((vector_size(32)));

template <typename T>
struct Lanes;
template <>
struct Lanes<float> {
  using V = VecF;
  static constexpr int64_t count = 8;
};
template <>
struct Lanes<double> {
  using V = VecD;
  static constexpr int64_t count = 4;
};

// Largest transform length the lane pipeline takes: the column transform of a
// depth-folded volume (docs/design.md §19) is ~1,800 points for 21^3 on 32^3.
// Its work buffers are a few times n_h * (n_w/2+1) vectors per thread, which
// lane_pipeline.cpp bounds on its own.
constexpr int64_t kMaxLength = 2048;

// True when n factors into the supported radices.
inline bool supported_length(int64_t n) {
  if (n < 1 || n > kMaxLength) return false;
  for (int64_t p : {2, 3, 5, 7})
    while (n % p == 0) n /= p;
  return n == 1;
}

// One pass of a Stockham transform: sub-transforms of length n, radix r,
// stride s between the interleaved sub-sequences.
template <typename T>
struct Stage {
  int64_t radix, n, stride;
  std::vector<T> tw_re, tw_im;  // twiddle of (p, u) at p * radix + u, p < n / radix
};

// A transform of length n in direction sign (-1 forward, +1 inverse).
template <typename T>
struct Plan {
  int64_t n = 1;
  int sign = -1;
  std::vector<Stage<T>> stages;
  // the 7-point DFT matrix: dft_re[7][t * 7 + u] = cos(sign 2 pi t u / 7) (radices 2, 3, 4, 5 have butterflies)
  std::vector<T> dft_re[8], dft_im[8];

  Plan() = default;
  Plan(int64_t length, int direction) : n(length), sign(direction) {
    int64_t m = n, s = 1;
    while (m > 1) {
      const int64_t r = m % 4 == 0 ? 4 : m % 2 == 0 ? 2 : m % 3 == 0 ? 3 : m % 5 == 0 ? 5 : 7;
      Stage<T> g{r, m, s, {}, {}};
      for (int64_t p = 0; p < m / r; ++p)
        for (int64_t u = 0; u < r; ++u) {
          const double a = sign * 2.0 * M_PI * static_cast<double>(p * u) / static_cast<double>(m);
          g.tw_re.push_back(static_cast<T>(std::cos(a)));
          g.tw_im.push_back(static_cast<T>(std::sin(a)));
        }
      if (r == 7 && dft_re[r].empty())
        for (int64_t t = 0; t < r; ++t)
          for (int64_t u = 0; u < r; ++u) {
            const double a = sign * 2.0 * M_PI * static_cast<double>((t * u) % r) / static_cast<double>(r);
            dft_re[r].push_back(static_cast<T>(std::cos(a)));
            dft_im[r].push_back(static_cast<T>(std::sin(a)));
          }
      stages.push_back(std::move(g));
      m /= r;
      s *= r;
    }
  }
};

// In-place r-point DFT of (ar[t], ai[t]), t < r.
template <typename V, typename T, int R>
FFTCONV_LANE_INLINE void small_dft(V* ar, V* ai, const Plan<T>& plan) {
  if constexpr (R == 2) {
    const V r0 = ar[0] + ar[1], i0 = ai[0] + ai[1], r1 = ar[0] - ar[1], i1 = ai[0] - ai[1];
    ar[0] = r0, ai[0] = i0, ar[1] = r1, ai[1] = i1;
  } else if constexpr (R == 4) {
    const V t0r = ar[0] + ar[2], t0i = ai[0] + ai[2], t1r = ar[0] - ar[2], t1i = ai[0] - ai[2];
    const V t2r = ar[1] + ar[3], t2i = ai[1] + ai[3], t3r = ar[1] - ar[3], t3i = ai[1] - ai[3];
    // t3 times W4 = -i (forward) or +i (inverse)
    const V ur = plan.sign < 0 ? t3i : -t3i, ui = plan.sign < 0 ? -t3r : t3r;
    ar[0] = t0r + t2r, ai[0] = t0i + t2i, ar[2] = t0r - t2r, ai[2] = t0i - t2i;
    ar[1] = t1r + ur, ai[1] = t1i + ui, ar[3] = t1r - ur, ai[3] = t1i - ui;
  } else if constexpr (R == 3) {
    // y1,2 = x0 - (x1 + x2)/2 +- i sign sin(2 pi/3) (x1 - x2)
    const T s = static_cast<T>(plan.sign) * T(0.866025403784438646763723170753);
    const V ar_ = ar[1] + ar[2], ai_ = ai[1] + ai[2];
    const V jr = (ar[1] - ar[2]) * s, ji = (ai[1] - ai[2]) * s;
    const V mr = ar[0] - ar_ * T(0.5), mi = ai[0] - ai_ * T(0.5);
    ar[0] = ar[0] + ar_, ai[0] = ai[0] + ai_;
    ar[1] = mr - ji, ai[1] = mi + jr;
    ar[2] = mr + ji, ai[2] = mi - jr;
  } else if constexpr (R == 5) {
    // pairs (x1, x4), (x2, x3): sums times the cosines, differences times the sines
    const T c1 = T(0.309016994374947424102293417183), c2 = T(-0.809016994374947424102293417183);
    const T sg = static_cast<T>(plan.sign);
    const T s1 = sg * T(0.951056516295153572116439333379), s2 = sg * T(0.587785252292473129168705954639);
    const V a1r = ar[1] + ar[4], a1i = ai[1] + ai[4], b1r = ar[1] - ar[4], b1i = ai[1] - ai[4];
    const V a2r = ar[2] + ar[3], a2i = ai[2] + ai[3], b2r = ar[2] - ar[3], b2i = ai[2] - ai[3];
    const V m1r = ar[0] + a1r * c1 + a2r * c2, m1i = ai[0] + a1i * c1 + a2i * c2;
    const V m2r = ar[0] + a1r * c2 + a2r * c1, m2i = ai[0] + a1i * c2 + a2i * c1;
    const V j1r = b1r * s1 + b2r * s2, j1i = b1i * s1 + b2i * s2;  // y1, y4 = m1 +- i j1
    const V j2r = b1r * s2 - b2r * s1, j2i = b1i * s2 - b2i * s1;  // y2, y3 = m2 +- i j2
    ar[0] = ar[0] + a1r + a2r, ai[0] = ai[0] + a1i + a2i;
    ar[1] = m1r - j1i, ai[1] = m1i + j1r;
    ar[4] = m1r + j1i, ai[4] = m1i - j1r;
    ar[2] = m2r - j2i, ai[2] = m2i + j2r;
    ar[3] = m2r + j2i, ai[3] = m2i - j2r;
  } else {
    // odd R (7): with a_j = x_j + x_{R-j}, b_j = x_j - x_{R-j}, j <= H,
    // y_u, y_{R-u} = x0 + sum_j cos(2 pi j u / R) a_j +- i sign sum_j sin(2 pi j u / R) b_j
    // (cos and sign * sin from the plan's DFT matrix): H*H products each, not R*R
    constexpr int H = (R - 1) / 2;
    const T* cr = plan.dft_re[R].data();
    const T* ci = plan.dft_im[R].data();
    V pr[H], pi[H], qr[H], qi[H];
    V y0r = ar[0], y0i = ai[0];
    for (int j = 1; j <= H; ++j) {
      pr[j - 1] = ar[j] + ar[R - j], pi[j - 1] = ai[j] + ai[R - j];
      qr[j - 1] = ar[j] - ar[R - j], qi[j - 1] = ai[j] - ai[R - j];
      y0r += pr[j - 1], y0i += pi[j - 1];
    }
    V yr[R], yi[R];
    for (int u = 1; u <= H; ++u) {
      V mr = ar[0], mi = ai[0], jr = V{} * T(0), ji = V{} * T(0);
      for (int j = 1; j <= H; ++j) {
        const T c = cr[j * R + u], sn = ci[j * R + u];
        mr += pr[j - 1] * c, mi += pi[j - 1] * c;
        jr += qr[j - 1] * sn, ji += qi[j - 1] * sn;
      }
      yr[u] = mr - ji, yi[u] = mi + jr;
      yr[R - u] = mr + ji, yi[R - u] = mi - jr;
    }
    ar[0] = y0r, ai[0] = y0i;
    for (int u = 1; u < R; ++u) ar[u] = yr[u], ai[u] = yi[u];
  }
}

template <typename V, typename T, int R>
FFTCONV_LANE_INLINE void stockham_stage(const Stage<T>& g, const Plan<T>& plan, const V* xr, const V* xi, V* yr,
                                        V* yi) {
  const int64_t m = g.n / R, s = g.stride;
  for (int64_t p = 0; p < m; ++p) {
    const T* twr = g.tw_re.data() + p * R;
    const T* twi = g.tw_im.data() + p * R;
    for (int64_t q = 0; q < s; ++q) {
      V ar[R], ai[R];
      for (int t = 0; t < R; ++t) ar[t] = xr[q + s * (p + t * m)], ai[t] = xi[q + s * (p + t * m)];
      small_dft<V, T, R>(ar, ai, plan);
      yr[q + s * R * p] = ar[0];
      yi[q + s * R * p] = ai[0];
      for (int u = 1; u < R; ++u) {
        yr[q + s * (R * p + u)] = ar[u] * twr[u] - ai[u] * twi[u];
        yi[q + s * (R * p + u)] = ar[u] * twi[u] + ai[u] * twr[u];
      }
    }
  }
}

// Transform of (re, im), n vectors each, in place; (wr, wi) is scratch of the same size.
template <typename V, typename T>
FFTCONV_LANE_INLINE void fft(const Plan<T>& plan, V* re, V* im, V* wr, V* wi) {
  V *xr = re, *xi = im, *yr = wr, *yi = wi;
  for (const Stage<T>& g : plan.stages) {
    switch (g.radix) {
      case 4: stockham_stage<V, T, 4>(g, plan, xr, xi, yr, yi); break;
      case 2: stockham_stage<V, T, 2>(g, plan, xr, xi, yr, yi); break;
      case 3: stockham_stage<V, T, 3>(g, plan, xr, xi, yr, yi); break;
      case 5: stockham_stage<V, T, 5>(g, plan, xr, xi, yr, yi); break;
      default: stockham_stage<V, T, 7>(g, plan, xr, xi, yr, yi); break;
    }
    V* t = xr;
    xr = yr, yr = t;
    t = xi;
    xi = yi, yi = t;
  }
  if (xr != re)
    for (int64_t i = 0; i < plan.n; ++i) re[i] = xr[i], im[i] = xi[i];
}

// Real transforms of length 2m through complex ones of length m: the even
// samples in the real parts, the odd ones in the imaginary parts.
// rot_re/rot_im[k] = cos/sin(-2 pi k / 2m), k <= m.
//
// Forward: from Z = FFT_m(z), the half spectrum X[k], k <= m:
// X[k] = E[k] + e^{-2 pi i k / 2m} O[k], E = (Z[k] + conj Z[m-k]) / 2,
// O = (Z[k] - conj Z[m-k]) / 2i (Z[m] meaning Z[0]).
template <typename V, typename T>
FFTCONV_LANE_INLINE void real_forward_unpack(const V* zr, const V* zi, int64_t m, const T* rot_re, const T* rot_im,
                                             V* xr, V* xi) {
  for (int64_t k = 0; k <= m; ++k) {
    const int64_t a = k == m ? 0 : k, b = k == 0 ? 0 : m - k;
    const V er = T(0.5) * (zr[a] + zr[b]), ei = T(0.5) * (zi[a] - zi[b]);
    const V orr = T(0.5) * (zi[a] + zi[b]), oi = T(0.5) * (zr[b] - zr[a]);
    xr[k] = er + orr * rot_re[k] - oi * rot_im[k];
    xi[k] = ei + orr * rot_im[k] + oi * rot_re[k];
  }
}

// Inverse: from the half spectrum X[k], k <= m, Z[k] = E[k] + i O[k] with
// E = X[k] + conj X[m-k], O = (X[k] - conj X[m-k]) e^{+2 pi i k / 2m}, k < m;
// the inverse FFT_m of Z holds x[2j] in its real parts and x[2j+1] in its
// imaginary parts. As a c2r transform does, the imaginary parts of X[0] and
// X[m] are ignored (the caller zeroes them).
template <typename V, typename T>
FFTCONV_LANE_INLINE void real_inverse_pack(const V* xr, const V* xi, int64_t m, const T* rot_re, const T* rot_im,
                                           V* zr, V* zi) {
  for (int64_t k = 0; k < m; ++k) {
    const V er = xr[k] + xr[m - k], ei = xi[k] - xi[m - k];
    const V dr = xr[k] - xr[m - k], di = xi[k] + xi[m - k];
    // times e^{+i theta}: cos = rot_re, sin = -rot_im
    const V orr = dr * rot_re[k] + di * rot_im[k], oi = di * rot_re[k] - dr * rot_im[k];
    zr[k] = er - oi;
    zi[k] = ei + orr;
  }
}

}  // namespace lanes
}  // namespace cpu
}  // namespace fftconv
