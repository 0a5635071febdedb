// The whole-plane pipeline's pointwise stages (docs/design.md §13, §17), written once for
// its CUDA kernels (cuda/conv_cuda.cu) and their host emulation (testing/), so that the
// CPU tests check the kernels' own indexing. A block of P planes is plane-major:
// (P, n_h, n_w) real, (P, n_h, n_w/2+1) complex, the layout of one batched 2-D cuFFT plan.
// Also what a block reads and writes per direction (PlaneSource, DirectionSides), which the
// row-pruned pipeline shares.
// Header-only, no CUDA includes.
#pragma once

#include <cstdint>

#include "conv/conv_geometry.h"
#include "core/pointwise.h"

namespace fftconv {

// Where plane q of a block comes from: batch b0 + q / per_batch, channel
// c0 + q % per_batch of a (N, channels, src_h, src_w) tensor, placed with
// steps (step_h, step_w) (the zero-stuffing of the input gradient).
struct PlaneSource {
  int64_t channels, planes_per_group, src_h, src_w, step_h, step_w;
};

inline PlaneSource input_side(const ConvGeometry2d& p) { return {p.c_in, p.cpg, p.h.in_len, p.w.in_len, 1, 1}; }
inline PlaneSource output_side(const ConvGeometry2d& p) {
  return {p.c_out, p.opg, p.h.out_len, p.w.out_len, p.h.stride, p.w.stride};
}

// What a pipeline reads and writes in one direction (the forward, or the input gradient when
// adjoint): its source planes, source and destination planes per group, the destination's
// channels and size, and the steps its crop reads with (the forward's stride; 1 for the
// adjoint). Shared by both CUDA pipelines and the emulation.
struct DirectionSides {
  PlaneSource src;
  int64_t spg, dpg, dst_c, out_h, out_w, step_h, step_w;
};

inline DirectionSides direction_sides(const ConvGeometry2d& p, bool adjoint) {
  if (adjoint) return {output_side(p), p.opg, p.cpg, p.c_in, p.h.in_len, p.w.in_len, 1, 1};
  return {input_side(p), p.cpg, p.opg, p.c_out, p.h.out_len, p.w.out_len, p.h.stride, p.w.stride};
}

namespace whole_plane {

// Slot m of line L = q * n_h + r of the padded block: row r of plane q.
template <typename T, typename I>
FFTCONV_HD T pad_value(const T* src, const PlaneSource& s, int64_t b0, int64_t c0, I per_batch, I n_h, I L, I m) {
  const I q = L / n_h, r = L - q * n_h;
  const I qb = q / per_batch;
  const int64_t b = b0 + qb, c = c0 + (q - qb * per_batch);
  const T* plane = src + (b * s.channels + c) * s.src_h * s.src_w;
  return pad_load_value_2d(plane, static_cast<I>(s.src_h), static_cast<I>(s.src_w), static_cast<I>(s.step_h),
                           static_cast<I>(s.step_w), r, m);
}

// Frequency f of line L = qo * n_h + r of the products, qo = (b*ng + g)*dpg + q: the
// conjugate product of the block's source spectra with the kernel spectrum (the CUDA
// layout, row-major planes of n_h x nfw).
template <typename T, typename I>
FFTCONV_HD Complex<T> product(const Complex<T>* in, const Complex<T>* spec, I ng, int64_t g0, int64_t cpg,
                              int64_t opg, I n_h, I nfw, bool adjoint, I L, I f) {
  const I spg = static_cast<I>(adjoint ? opg : cpg), dpg = static_cast<I>(adjoint ? cpg : opg);
  const int64_t n_freq = static_cast<int64_t>(n_h) * nfw;
  const I qo = L / n_h, r = L - qo * n_h;
  const I bg = qo / dpg, q = qo - bg * dpg, g = bg % ng;
  const Complex<T>* x = in + (static_cast<int64_t>(bg) * spg * n_h + r) * nfw;
  const Complex<T>* sp = spec + spectrum_plane(g0 + g, q, 0, cpg, opg, adjoint) * n_freq + static_cast<int64_t>(r) * nfw;
  return spectral_dot(x + f, n_freq, sp + f, spectrum_plane_step(cpg, adjoint) * n_freq, spg, adjoint);
}

}  // namespace whole_plane
}  // namespace fftconv
