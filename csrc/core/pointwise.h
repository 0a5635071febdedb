// The pointwise stages of the pipeline, written once for the CPU loops and the
// CUDA kernels: pad-load, spectral multiply, crop + bias store, tap gather.
//
// Complex numbers are interleaved (re, im) pairs, the layout of std::complex,
// c10::complex, cufftComplex and MKL, so buffers from any FFT library can be
// viewed as Complex<T>.
#pragma once

#include <cstdint>

#include "core/geometry.h"

namespace fftconv {

template <typename T>
struct alignas(2 * sizeof(T)) Complex {
  T re;
  T im;
};

template <typename T>
FFTCONV_HD Complex<T> cmul(Complex<T> a, Complex<T> b) {
  return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
}

// a * conj(b)
template <typename T>
FFTCONV_HD Complex<T> cmul_conj(Complex<T> a, Complex<T> b) {
  return {a.re * b.re + a.im * b.im, a.im * b.re - a.re * b.im};
}

// Value of slot m of a zero-padded (and, for the input gradient, zero-stuffed)
// row: the source element m/step when m is a multiple of `step` inside the
// source, else zero. step == 1 is the plain pad of the forward pass. I is the
// index type (int64_t; the CUDA kernels use int32_t inside small planes).
template <typename T, typename I>
FFTCONV_HD T pad_load_value(const T* src_row, I src_len, I step, I m) {
  if (step == 1) return m < src_len ? src_row[m] : T(0);  // no division on the common path
  if (m % step != 0) return T(0);
  const I i = m / step;
  return i < src_len ? src_row[i] : T(0);
}

// A whole padded row of n slots; step == 1 (the forward pass) is a copy and a
// zero tail.
template <typename T>
FFTCONV_HD void pad_load_row(T* dst, const T* src_row, int64_t src_len, int64_t step, int64_t n) {
  if (step == 1) {
    const int64_t len = src_len < n ? src_len : n;
    for (int64_t m = 0; m < len; ++m) dst[m] = src_row[m];
    for (int64_t m = len; m < n; ++m) dst[m] = T(0);
  } else {
    for (int64_t m = 0; m < n; ++m) dst[m] = pad_load_value(src_row, src_len, step, m);
  }
}

// 2-D version: slot (r, m) of a plane of `rows x n_cols` fed by a contiguous
// src plane of src_h x src_w placed with steps (step_h, step_w).
template <typename T, typename I>
FFTCONV_HD T pad_load_value_2d(const T* src_plane, I src_h, I src_w, I step_h, I step_w, I r, I m) {
  if (step_h != 1 && r % step_h != 0) return T(0);
  const I i = step_h == 1 ? r : r / step_h;
  if (i >= src_h) return T(0);
  return pad_load_value(src_plane + i * src_w, src_w, step_w, m);
}

// On the CPU, spectra are kept column-major per plane, (n_w/2+1) x n_h, so
// that the transform along H is over contiguous memory. These two moves go
// between the row-major half spectra of the W transforms and that layout,
// adding the zero rows (docs/design.md §4) or keeping only the rows read out. (The CUDA
// driver transforms whole planes with 2-D plans and keeps spectra row-major.)

// Slot (f, r) of a column-major plane of n_h rows, from a row-major half
// spectrum of `rows` rows (zero beyond).
template <typename T>
FFTCONV_HD Complex<T> transpose_pad_value(const Complex<T>* rows_plane, int64_t rows,
                                          int64_t n_freq_w, int64_t f, int64_t r) {
  return r < rows ? rows_plane[r * n_freq_w + f] : Complex<T>{T(0), T(0)};
}

// Row i of the kept rows (every `step`-th row) at frequency f, read from a
// column-major plane of n_h rows.
template <typename T>
FFTCONV_HD Complex<T> transpose_select_value(const Complex<T>* cols_plane, int64_t n_h,
                                             int64_t step, int64_t i, int64_t f) {
  return cols_plane[f * n_h + i * step];
}

// How the spectral multiply pairs spectra. Shapes (per frequency f):
//   kernel spectrum S: [C_out][C_in/groups]
//   forward:    Y[b][g*opg + o] = sum_c S[g*opg + o][c]       * X[b][g*cpg + c]
//   adjoint:    X[b][g*cpg + c] = sum_o conj(S[g*opg + o][c]) * Y[b][g*opg + o]
// Depthwise (cpg == opg == 1) reduces to one product per frequency (docs/design.md §6).

// One frequency of one output plane: sum over k < count of s[k] * x[k]
// (conj(s[k]) * x[k] for the adjoint), x and s strided in memory.
template <typename T>
FFTCONV_HD Complex<T> spectral_dot(const Complex<T>* x, int64_t x_stride, const Complex<T>* s,
                                   int64_t s_stride, int64_t count, bool conj_s) {
  Complex<T> acc = {T(0), T(0)};
  for (int64_t k = 0; k < count; ++k) {
    const Complex<T> p = conj_s ? cmul_conj(x[k * x_stride], s[k * s_stride])
                                : cmul(x[k * x_stride], s[k * s_stride]);
    acc.re += p.re;
    acc.im += p.im;
  }
  return acc;
}

// Index (in planes) of the kernel spectrum that pairs with summand k of
// output q of group g: S[g*opg + q][k] forward, S[g*opg + k][q] adjoint.
FFTCONV_HD int64_t spectrum_plane(int64_t g, int64_t q, int64_t k, int64_t cpg, int64_t opg,
                                  bool adjoint) {
  return adjoint ? (g * opg + k) * cpg + q : (g * opg + q) * cpg + k;
}

// Plane stride between consecutive summands k in the kernel spectrum.
FFTCONV_HD int64_t spectrum_plane_step(int64_t cpg, bool adjoint) { return adjoint ? cpg : 1; }

// Crop + bias: output element j of a row reads slot j * col_step of the
// buffer row (the stride; the CPU's lane pipeline reads one lane of a row of
// vectors, col_step = the lane count).
template <typename T, typename I>
FFTCONV_HD T crop_store_value(const T* buf_row, I col_step, I j, T bias) {
  return buf_row[j * col_step] + bias;
}

// Output element (i, j) of a plane reads buffer slot (i*stride_h, j*stride_w)
// of a real plane with row length n_cols.
template <typename T, typename I>
FFTCONV_HD T crop_store_value(const T* buf_plane, I n_cols, I stride_h, I stride_w, I i, I j, T bias) {
  return crop_store_value(buf_plane + (i * stride_h) * n_cols, stride_w, j, bias);
}

// Gradient of the weight: tap (th, tw) of the kept window reads the circular
// correlation r of input and output gradient at the tap's slot.
template <typename T>
FFTCONV_HD T gather_tap_value(const T* r_plane, int64_t n_cols, const AxisGeometry& ph,
                              const AxisGeometry& pw, int64_t th, int64_t tw) {
  return r_plane[tap_slot(ph, th) * n_cols + tap_slot(pw, tw)];
}

}  // namespace fftconv
