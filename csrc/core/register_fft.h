// Small FFTs whose length is a compile-time constant, held by one thread in
// local arrays: with every loop unrolled and every index a constant, the CUDA
// compiler keeps the arrays in registers, so a thread transforms a whole row
// or column of a small plane without touching memory between passes. Used by
// the small-plane kernel (small_plane/forward.h); compiled for the host
// too, where the unit tests check it against a naive DFT.
//
// Self-sorting (Stockham) passes, natural order in and out, radices 4, 2 and 3
// (lengths 2^a 3^b). Unnormalised. Twiddles come from a table of the N-th (or
// a multiple) roots of unity, `tw[k] = exp(-2 pi i k / (N * TS))`: shared
// memory on the GPU, so each twiddle is one broadcast load.
#pragma once

#include <cmath>

#include "core/pointwise.h"

#if defined(__CUDACC__)
#define FFTCONV_UNROLL _Pragma("unroll")
#else
#define FFTCONV_UNROLL
#endif

namespace fftconv {
namespace regfft {

// Radix of the next pass over sub-transforms of length M.
template <int M>
struct NextRadix {
  static constexpr int value = M % 4 == 0 ? 4 : M % 2 == 0 ? 2 : 3;
};

template <int N>
struct IsSupportedLength {
  static constexpr bool value = N % 2 == 0 ? IsSupportedLength<N / 2>::value
                                           : N % 3 == 0 && IsSupportedLength<N / 3>::value;
};
template <>
struct IsSupportedLength<1> {
  static constexpr bool value = true;
};
template <>
struct IsSupportedLength<0> {
  static constexpr bool value = false;
};

// exp(-2 pi i k / n) in T, computed in double (host: <cmath>; device: sincospi).
template <typename T>
FFTCONV_HD Complex<T> unit_root(int k, int n) {
  const double x = -2.0 * static_cast<double>(k) / static_cast<double>(n);  // angle / pi
  double s, c;
#if defined(__CUDA_ARCH__)
  sincospi(x, &s, &c);
#else
  c = std::cos(M_PI * x);
  s = std::sin(M_PI * x);
#endif
  return {static_cast<T>(c), static_cast<T>(s)};
}

template <typename T>
FFTCONV_HD Complex<T> cadd(Complex<T> a, Complex<T> b) {
  return {a.re + b.re, a.im + b.im};
}
template <typename T>
FFTCONV_HD Complex<T> csub(Complex<T> a, Complex<T> b) {
  return {a.re - b.re, a.im - b.im};
}
// i * a (INV) or -i * a (forward): the quarter-turn of the transform's sign.
template <typename T, bool INV>
FFTCONV_HD Complex<T> quarter_turn(Complex<T> a) {
  return INV ? Complex<T>{-a.im, a.re} : Complex<T>{a.im, -a.re};
}

// In-place R-point DFT of a[0..R) in the transform's direction.
template <typename T, int R, bool INV>
FFTCONV_HD void butterfly(Complex<T>* a) {
  if (R == 2) {
    const Complex<T> s = cadd(a[0], a[1]), d = csub(a[0], a[1]);
    a[0] = s, a[1] = d;
  } else if (R == 4) {
    const Complex<T> t0 = cadd(a[0], a[2]), t1 = csub(a[0], a[2]);
    const Complex<T> t2 = cadd(a[1], a[3]), t3 = quarter_turn<T, INV>(csub(a[1], a[3]));
    a[0] = cadd(t0, t2), a[2] = csub(t0, t2);
    a[1] = cadd(t1, t3), a[3] = csub(t1, t3);
  } else {  // R == 3: y_{1,2} = a0 - (a1 + a2)/2 -/+ i sign sqrt(3)/2 (a1 - a2)
    const T h = T(0.86602540378443864676);  // sqrt(3) / 2
    const Complex<T> s = cadd(a[1], a[2]), d = quarter_turn<T, INV>(csub(a[1], a[2]));
    const Complex<T> m = {a[0].re - T(0.5) * s.re, a[0].im - T(0.5) * s.im};
    a[0] = cadd(a[0], s);
    a[1] = {m.re + h * d.re, m.im + h * d.im};
    a[2] = {m.re - h * d.re, m.im - h * d.im};
  }
}

// Twiddle k of the table, conjugated for the inverse.
template <typename T, bool INV>
FFTCONV_HD Complex<T> twiddle(const Complex<T>* tw, int k) {
  const Complex<T> w = tw[k];
  return INV ? Complex<T>{w.re, -w.im} : w;
}

// a times twiddle k of a table of n (conjugated for the inverse). After
// unrolling k and n are constants, so the trivial twiddles (1, -i, -1, +i:
// all of a transform's last pass, the first butterfly of every pass) cost
// no multiply and no load.
template <typename T, bool INV>
FFTCONV_HD Complex<T> rotate(Complex<T> a, const Complex<T>* tw, int k, int n) {
  if (k == 0) return a;
  if (4 * k == n) return quarter_turn<T, INV>(a);  // exp(-i pi / 2) = -i
  if (2 * k == n) return {-a.re, -a.im};
  if (4 * k == 3 * n) return quarter_turn<T, !INV>(a);  // exp(-3 i pi / 2) = +i
  return cmul(a, twiddle<T, INV>(tw, k));
}

// The passes over sub-transforms of length M with stride S between the
// interleaved sub-sequences (M = N, S = 1 first), recursively down to M = 1.
template <typename T, int N, int M, int S, int TS, bool INV>
struct StockhamPasses {
  FFTCONV_HD static void run(Complex<T>* x, const Complex<T>* tw) {
    constexpr int R = NextRadix<M>::value, MP = M / R;
    Complex<T> y[N];
    FFTCONV_UNROLL
    for (int p = 0; p < MP; ++p) {
      FFTCONV_UNROLL
      for (int q = 0; q < S; ++q) {
        Complex<T> a[R];
        FFTCONV_UNROLL
        for (int t = 0; t < R; ++t) a[t] = x[q + S * (p + t * MP)];
        butterfly<T, R, INV>(a);
        y[q + S * R * p] = a[0];
        FFTCONV_UNROLL
        for (int u = 1; u < R; ++u)  // exp(sign 2 pi i p u / M) = table slot p u (N / M) TS
          y[q + S * (R * p + u)] = rotate<T, INV>(a[u], tw, p * u * (N / M) * TS, N * TS);
      }
    }
    FFTCONV_UNROLL
    for (int i = 0; i < N; ++i) x[i] = y[i];
    StockhamPasses<T, N, MP, S * R, TS, INV>::run(x, tw);
  }
};
template <typename T, int N, int S, int TS, bool INV>
struct StockhamPasses<T, N, 1, S, TS, INV> {
  FFTCONV_HD static void run(Complex<T>*, const Complex<T>*) {}
};

// x[0..N) <- its DFT (INV: with the opposite sign), unnormalised. tw holds
// exp(-2 pi i k / (N * TS)) for k < N * TS.
template <typename T, int N, int TS = 1, bool INV = false>
FFTCONV_HD void fft(Complex<T>* x, const Complex<T>* tw) {
  static_assert(IsSupportedLength<N>::value, "register FFT lengths are 2^a 3^b");
  StockhamPasses<T, N, N, 1, TS, INV>::run(x, tw);
}

// Half spectrum X[0..N/2] of N real samples x (N even) through one complex
// transform of length N/2: even samples in the real parts, odd ones in the
// imaginary parts, then X[k] = E[k] + exp(-2 pi i k / N) O[k] with
// E = (Z[k] + conj Z[M-k]) / 2, O = (Z[k] - conj Z[M-k]) / 2i (indices mod M).
// tw: exp(-2 pi i k / N), k < N.
template <typename T, int N>
FFTCONV_HD void real_forward(const T* x, Complex<T>* X, const Complex<T>* tw) {
  constexpr int M = N / 2;
  static_assert(N % 2 == 0, "real transforms of even length");
  Complex<T> z[M];
  FFTCONV_UNROLL
  for (int k = 0; k < M; ++k) z[k] = {x[2 * k], x[2 * k + 1]};
  fft<T, M, 2, false>(z, tw);
  FFTCONV_UNROLL
  for (int k = 0; k <= M; ++k) {
    const Complex<T> a = z[k % M], b = z[(M - k) % M];
    const T er = T(0.5) * (a.re + b.re), ei = T(0.5) * (a.im - b.im);
    const T orr = T(0.5) * (a.im + b.im), oi = T(0.5) * (b.re - a.re);
    const Complex<T> w = tw[k];
    X[k] = {er + orr * w.re - oi * w.im, ei + orr * w.im + oi * w.re};
  }
}

// N real samples x from a half spectrum X[0..N/2], unnormalised (N times the
// inverse DFT), as a c2r transform: the imaginary parts of X[0] and X[N/2]
// are ignored. Z[k] = E + i O with E = X[k] + conj X[M-k] and
// O = (X[k] - conj X[M-k]) exp(+2 pi i k / N); the inverse transform of Z
// holds x[2j] in its real parts and x[2j+1] in its imaginary parts.
template <typename T, int N>
FFTCONV_HD void real_inverse(const Complex<T>* X, T* x, const Complex<T>* tw) {
  constexpr int M = N / 2;
  static_assert(N % 2 == 0, "real transforms of even length");
  Complex<T> z[M];
  FFTCONV_UNROLL
  for (int k = 0; k < M; ++k) {
    const Complex<T> a = X[k], b = X[M - k];
    const T ai = k == 0 ? T(0) : a.im, bi = k == 0 ? T(0) : b.im;  // X[0], X[M]: real parts only
    const T er = a.re + b.re, ei = ai - bi, dr = a.re - b.re, di = ai + bi;
    const Complex<T> w = tw[k];
    const T orr = dr * w.re + di * w.im, oi = di * w.re - dr * w.im;
    z[k] = {er - oi, ei + orr};
  }
  fft<T, M, 2, true>(z, tw);
  FFTCONV_UNROLL
  for (int k = 0; k < M; ++k) x[2 * k] = z[k].re, x[2 * k + 1] = z[k].im;
}

}  // namespace regfft
}  // namespace fftconv
