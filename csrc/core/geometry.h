// Per-axis geometry of an FFT cross-correlation (docs/design.md §1-§3, §7, §8).
//
// Header-only, no torch dependency, usable from host and device code, so the
// same arithmetic drives the CPU loops, the CUDA kernels and the C++ unit tests.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FFTCONV_HD __host__ __device__ __forceinline__
#else
#define FFTCONV_HD inline
#endif

namespace fftconv {

// True when n factors into 2, 3, 5 and 7 only: sizes every FFT library handles
// with its fastest codelets.
FFTCONV_HD bool is_fast_size(int64_t n) {
  if (n < 1) return false;
  const int64_t primes[4] = {2, 3, 5, 7};
  for (int i = 0; i < 4; ++i)
    while (n % primes[i] == 0) n /= primes[i];
  return n == 1;
}

// Smallest fast size >= n.
FFTCONV_HD int64_t next_fast_size(int64_t n) {
  if (n <= 1) return 1;
  while (!is_fast_size(n)) ++n;
  return n;
}

// Smallest even fast size >= n (1 for n <= 1). Odd lengths cost 1.5-3x more
// per point in MKL's real transforms (measured: r2c of 75 or 81 points takes
// twice as long as 72 or 80), so fft_length never picks one.
FFTCONV_HD int64_t next_fast_even_size(int64_t n) {
  if (n <= 1) return 1;
  int64_t m = next_fast_size(n);
  while (m % 2 != 0) m = next_fast_size(m + 1);
  return m;
}

// The FFT length used for at least n points: the smallest even
// fast size, unless it has a factor 7 and an even size of 2, 3 and 5 only is
// at most 3% longer. A radix-7 pass costs more per point than 3% more points
// (measured with MKL, 2x384x64x64, k=13: 72 points 9.2 ms, 70 points 10.3 ms;
// at 42, 48 is 14% longer and slower, so 42 stays).
FFTCONV_HD int64_t fft_length(int64_t n) {
  const int64_t m = next_fast_even_size(n);
  if (m <= 1 || m % 7 != 0) return m;
  int64_t alt = m;
  do {
    alt = next_fast_even_size(alt + 1);
  } while (alt % 7 == 0);
  return 100 * alt <= 103 * m ? alt : m;
}

FFTCONV_HD int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
FFTCONV_HD int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// floor(a / b) for b > 0 and any sign of a.
FFTCONV_HD int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}
FFTCONV_HD int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// Non-negative a mod n.
FFTCONV_HD int64_t wrap_index(int64_t a, int64_t n) {
  int64_t r = a % n;
  return r < 0 ? r + n : r;
}

// Number of outputs of a strided correlation, as F.conv computes it.
FFTCONV_HD int64_t conv_output_length(int64_t in_len, int64_t kernel, int64_t pad_l,
                                      int64_t pad_r, int64_t stride, int64_t dilation) {
  const int64_t span = dilation * (kernel - 1) + 1;
  const int64_t padded = in_len + pad_l + pad_r;
  if (padded < span) return 0;
  return (padded - span) / stride + 1;
}

// Smallest circular length for which a correlation of an input placed at
// [0, in_len), read at outputs [0, dense_out), is free of wrap-around, given
// the input reach to the left (pad_l) and right (pad_r) of [0, in_len)
// (docs/design.md §1). The textbook in_len + k - 1 is larger whenever padding < k - 1.
FFTCONV_HD int64_t alias_free_length(int64_t in_len, int64_t dense_out, int64_t pad_l,
                                     int64_t pad_r) {
  return max64(in_len + max64(max64(pad_l, pad_r), 0), dense_out);
}

// Everything one spatial axis needs: where taps go in the FFT buffer, how long
// the buffer is, which outputs to read.
struct AxisGeometry {
  int64_t in_len;      // H
  int64_t out_len;     // outputs after striding
  int64_t stride;
  int64_t dilation;
  int64_t dense_len;   // (out_len - 1) * stride + 1: the dense outputs actually read
  int64_t tap_begin;   // first kept tap of the original kernel (docs/design.md §2)
  int64_t tap_count;   // kept taps; 0 when no tap ever reaches the input
  int64_t shift;       // left reach of the kept taps: tap t lands at (t*dilation - shift) mod n_fft
  int64_t n_fft;       // FFT length along this axis
  bool circular;       // circular padding: n_fft == in_len, folded taps accumulate
};

// Plan one axis for zero padding (circular=false) or circular padding
// (circular=true; requires pad_l + pad_r <= dilation*(kernel-1) so that the
// dense outputs fit in one period). `fast` rounds n_fft up to fft_length().
FFTCONV_HD AxisGeometry make_axis_geometry(int64_t in_len, int64_t kernel, int64_t pad_l, int64_t pad_r,
                                   int64_t stride, int64_t dilation, bool circular,
                                   bool fast = true) {
  AxisGeometry p;
  p.in_len = in_len;
  p.stride = stride;
  p.dilation = dilation;
  p.circular = circular;
  p.out_len = conv_output_length(in_len, kernel, pad_l, pad_r, stride, dilation);
  p.dense_len = p.out_len > 0 ? (p.out_len - 1) * stride + 1 : 0;
  if (circular) {
    p.tap_begin = 0;
    p.tap_count = kernel;
    p.shift = pad_l;
    p.n_fft = in_len;
    return p;
  }
  // Rule 2: tap t (offset t*d) reaches input index i + t*d - pad_l for outputs
  // i in [0, dense_len); it matters only if that range meets [0, in_len).
  const int64_t lo = pad_l - (p.dense_len - 1);  // smallest useful offset
  const int64_t hi = pad_l + in_len - 1;          // largest useful offset
  int64_t t0 = max64(0, ceil_div(lo, dilation));
  int64_t t1 = min64(kernel - 1, floor_div(hi, dilation));
  if (p.dense_len == 0 || t1 < t0) {
    p.tap_begin = 0;
    p.tap_count = 0;
    p.shift = 0;
    p.n_fft = fast ? fft_length(max64(in_len, p.dense_len)) : max64(in_len, p.dense_len);
    if (p.n_fft < 1) p.n_fft = 1;
    return p;
  }
  p.tap_begin = t0;
  p.tap_count = t1 - t0 + 1;
  p.shift = pad_l - t0 * dilation;
  const int64_t last_read = p.dense_len - 1 + (p.tap_count - 1) * dilation - p.shift;
  const int64_t reach_r = last_read - (in_len - 1);
  int64_t n = alias_free_length(in_len, p.dense_len, p.shift, reach_r);
  n = max64(n, (p.tap_count - 1) * dilation + 1);  // distinct slots for every tap
  p.n_fft = fast ? fft_length(n) : n;
  return p;
}

// Slot of kept tap t in the circular buffer (docs/design.md §3: the shift is baked into
// the kernel so output i lands at index i).
FFTCONV_HD int64_t tap_slot(const AxisGeometry& p, int64_t t) {
  return wrap_index(t * p.dilation - p.shift, p.n_fft);
}

// Length of the half spectrum of a real transform of length n.
FFTCONV_HD int64_t half_spectrum_length(int64_t n) { return n / 2 + 1; }

}  // namespace fftconv
