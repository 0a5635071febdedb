// The small-plane backward: both gradients (or the weight gradient
// alone) of a depthwise, stride-1 problem, in the manner of the forward
// kernel (small_plane/forward.h), in two launches:
//
//   1. a block takes one channel and a range of the batch, P planes at a
//      time: it loads the input X and the output gradient G, transforms both
//      along W (a thread per row) and along H (a thread per column), adds
//      X conj(G) over the P planes into the block's accumulator (docs/design.md §9) and,
//      for the input gradient, takes G conj(K) back along H and W and stores
//      it; at the end it writes its accumulator to a partial sum in global
//      memory;
//   2. a block per channel adds the partial sums (in a fixed order, so the
//      result does not depend on scheduling), takes the correlation back
//      along H, and the rows holding kept taps back along W, and writes the
//      taps.
//
// The phases are host-and-device functions of (block, item), run by the CUDA
// kernels (cuda/small_plane/kernel.cuh) and by the host emulation
// (small_plane_emulation.cpp) alike.
#pragma once

#include "cuda/small_plane/forward.h"

namespace fftconv {
namespace small_plane {

struct BackwardGeometry {
  int64_t batch, channels;
  int in_h, in_w, out_h, out_w;
  int g_rows;            // rows of a G buffer: max(in_h, out_h)
  int planes_per_round;  // P
  int64_t batch_per_block, blocks_per_channel;
  bool input_grad;
  AxisGeometry ph, pw;
  int64_t kernel_h, kernel_w;
  PlaneDividers x_div, g_div;  // item numbers of input / output-gradient planes (fast_divide.h)

  int64_t blocks() const { return channels * blocks_per_channel; }
};

template <typename T, int NH, int NW>
struct BackwardKernel {
  static constexpr int kFreqW = NW / 2 + 1;
  static constexpr int kTwiddles = NH + NW;
  static constexpr int kAcc = NH * kFreqW;  // one plane's full spectrum

  // Shared memory of launch 1, in Complex<T>: twiddles, the accumulator
  // (NH x kFreqW), then per plane an X buffer (NH x kFreqW: input rows, their
  // half spectra, the products X conj(G) of every row) and a G buffer
  // (g_rows x kFreqW: output-gradient rows, half spectra, input-gradient rows).
  FFTCONV_HD static int plane_elements(const BackwardGeometry& g) { return (NH + g.g_rows) * kFreqW; }
  static int64_t shared_elements(const BackwardGeometry& g) {
    return kTwiddles + kAcc + int64_t(g.planes_per_round) * plane_elements(g);
  }
  FFTCONV_HD static Complex<T>* acc(Complex<T>* shared) { return shared + kTwiddles; }
  FFTCONV_HD static const Complex<T>* acc(const Complex<T>* shared) { return shared + kTwiddles; }
  FFTCONV_HD static Complex<T>* x_buffer(const BackwardGeometry& g, Complex<T>* shared, int q) {
    return shared + kTwiddles + kAcc + q * plane_elements(g);
  }
  FFTCONV_HD static Complex<T>* g_buffer(const BackwardGeometry& g, Complex<T>* shared, int q) {
    return x_buffer(g, shared, q) + NH * kFreqW;
  }

  // Blocks: as many per channel as it takes to reach about target_blocks in
  // all (the batch split evenly), P planes a round within the shared budget.
  static BackwardGeometry geometry(const ConvGeometry2d& p, bool input_grad, int64_t shared_bytes,
                                   int64_t target_blocks) {
    BackwardGeometry g;
    g.batch = p.batch;
    g.channels = p.c_in;
    g.in_h = static_cast<int>(p.h.in_len);
    g.in_w = static_cast<int>(p.w.in_len);
    g.out_h = static_cast<int>(p.h.out_len);
    g.out_w = static_cast<int>(p.w.out_len);
    g.g_rows = g.in_h > g.out_h ? g.in_h : g.out_h;
    g.input_grad = input_grad;
    g.ph = p.h;
    g.pw = p.w;
    g.kernel_h = p.kernel_h;
    g.kernel_w = p.kernel_w;
    const int64_t fixed = (kTwiddles + kAcc) * int64_t(sizeof(Complex<T>));
    int64_t planes = (shared_bytes - fixed) / (plane_elements(g) * int64_t(sizeof(Complex<T>)));
    planes = planes > p.batch ? p.batch : planes;
    g.planes_per_round = static_cast<int>(planes < 1 ? 1 : planes);
    int64_t chunks = (target_blocks + g.channels - 1) / g.channels;
    const int64_t most = (p.batch + g.planes_per_round - 1) / g.planes_per_round;  // a round each
    chunks = chunks < 1 ? 1 : chunks > most ? most : chunks;
    g.batch_per_block = (p.batch + chunks - 1) / chunks;
    g.blocks_per_channel = (p.batch + g.batch_per_block - 1) / g.batch_per_block;
    g.x_div = PlaneDividers(g.in_h, g.in_w);
    g.g_div = PlaneDividers(g.out_h, g.out_w);
    return g;
  }

  // Block blk's channel and batch range [b_begin, b_end).
  FFTCONV_HD static void block_batch(const BackwardGeometry& g, int64_t blk, int64_t& c, int64_t& b_begin,
                                     int64_t& b_end) {
    c = blk / g.blocks_per_channel;
    b_begin = (blk - c * g.blocks_per_channel) * g.batch_per_block;
    b_end = b_begin + g.batch_per_block < g.batch ? b_begin + g.batch_per_block : g.batch;
  }

  // ---- launch 1: phases, each over items [0, n) -------------------------------

  // Before the rounds: twiddles (kTwiddles items) and a zero accumulator (kAcc items).
  FFTCONV_HD static void fill_twiddle(int item, Complex<T>* shared) { small_plane::fill_twiddle<T, NH, NW>(item, shared); }
  FFTCONV_HD static void zero_acc(int item, Complex<T>* shared) { acc(shared)[item] = Complex<T>{T(0), T(0)}; }

  // Round phase 0: the round's planes of X, then of G, element by element
  // (coalesced reads). count planes from batch element b0.
  FFTCONV_HD static int load_items(const BackwardGeometry& g, int count) {
    return count * (g.in_h * g.in_w + g.out_h * g.out_w);
  }
  FFTCONV_HD static void load(const BackwardGeometry& g, const T* x, const T* grad_out, int64_t c, int64_t b0,
                              int count, int item, Complex<T>* shared) {
    const int x_plane = static_cast<int>(g.x_div.plane.divisor), g_plane = static_cast<int>(g.g_div.plane.divisor);
    int q, e;
    if (item < count * x_plane) {
      g.x_div.plane.divmod(item, q, e);
      *buffer_sample<T, NW>(x_buffer(g, shared, q), g.x_div.w, e) = x[((b0 + q) * g.channels + c) * x_plane + e];
    } else {
      g.g_div.plane.divmod(item - count * x_plane, q, e);
      *buffer_sample<T, NW>(g_buffer(g, shared, q), g.g_div.w, e) =
          grad_out[((b0 + q) * g.channels + c) * g_plane + e];
    }
  }

  // Round phase 1: every data row of X and of G along W.
  FFTCONV_HD static int row_items(const BackwardGeometry& g, int count) { return count * (g.in_h + g.out_h); }
  FFTCONV_HD static void rows_forward(const BackwardGeometry& g, int count, int item, Complex<T>* shared) {
    int q, r;
    if (item < count * g.in_h) {
      g.x_div.h.divmod(item, q, r);
      row_forward<T, NW>(x_buffer(g, shared, q) + r * kFreqW, g.in_w, shared + NH);
    } else {
      g.g_div.h.divmod(item - count * g.in_h, q, r);
      row_forward<T, NW>(g_buffer(g, shared, q) + r * kFreqW, g.out_w, shared + NH);
    }
  }

  // Round phase 2: column f of plane q (item q * kFreqW + f): X and G along
  // H; X conj(G) replaces X's column (all NH rows); for the input gradient,
  // G conj(K) back along H into G's column (rows below in_h).
  FFTCONV_HD static int column_items(int count) { return count * kFreqW; }
  FFTCONV_HD static void columns(const BackwardGeometry& g, const Complex<T>* spectrum, int64_t c, int item,
                                 Complex<T>* shared) {
    const int q = item / kFreqW, f = item - q * kFreqW;
    Complex<T>* xc = x_buffer(g, shared, q) + f;
    Complex<T>* gc = g_buffer(g, shared, q) + f;
    // One column in registers at a time (two would spill at n_h = 64): X's
    // transform goes back to its buffer and is read again for the product.
    Complex<T> b[NH];
    column_forward<T, NH>(xc, kFreqW, g.in_h, b, shared);
    FFTCONV_UNROLL
    for (int h = 0; h < NH; ++h) xc[h * kFreqW] = b[h];
    column_forward<T, NH>(gc, kFreqW, g.out_h, b, shared);
    FFTCONV_UNROLL
    for (int h = 0; h < NH; ++h) xc[h * kFreqW] = cmul_conj(xc[h * kFreqW], b[h]);
    if (!g.input_grad) return;
    const Complex<T>* s = spectrum + c * int64_t(kAcc) + f;  // (channels, NH, kFreqW)
    FFTCONV_UNROLL
    for (int h = 0; h < NH; ++h) b[h] = cmul_conj(b[h], s[h * kFreqW]);
    column_inverse<T, NH>(b, gc, kFreqW, g.in_h, shared);
  }

  // Round phase 3a: accumulator value (h, f) (item h * kFreqW + f) plus the
  // round's products, in plane order.
  FFTCONV_HD static void accumulate(const BackwardGeometry& g, int count, int item, Complex<T>* shared) {
    Complex<T> sum = acc(shared)[item];
    for (int q = 0; q < count; ++q) {
      const Complex<T> v = x_buffer(g, shared, q)[item];
      sum.re += v.re;
      sum.im += v.im;
    }
    acc(shared)[item] = sum;
  }
  // Round phase 3b (same barrier: other buffers): input-gradient row i of
  // plane q (item q * in_h + i) back along W.
  FFTCONV_HD static int gin_row_items(const BackwardGeometry& g, int count) { return g.input_grad ? count * g.in_h : 0; }
  FFTCONV_HD static void gin_rows(const BackwardGeometry& g, int item, Complex<T>* shared) {
    int q, i;
    g.x_div.h.divmod(item, q, i);
    row_inverse<T, NW>(g_buffer(g, shared, q) + i * kFreqW, g.in_w, shared + NH);
  }

  // Round phase 4: the input gradient's planes, element by element (coalesced writes).
  FFTCONV_HD static int store_items(const BackwardGeometry& g, int count) {
    return g.input_grad ? count * g.in_h * g.in_w : 0;
  }
  FFTCONV_HD static void store_gin(const BackwardGeometry& g, T* gin, int64_t c, int64_t b0, int item,
                                   Complex<T>* shared) {
    int q, e;
    g.x_div.plane.divmod(item, q, e);
    gin[((b0 + q) * g.channels + c) * int64_t(g.x_div.plane.divisor) + e] =
        *buffer_sample<T, NW>(g_buffer(g, shared, q), g.x_div.w, e);
  }

  // After the rounds: the accumulator to the block's partial sum (kAcc items).
  FFTCONV_HD static void write_partial(int64_t blk, int item, Complex<T>* partial, Complex<T>* shared) {
    partial[blk * kAcc + item] = acc(shared)[item];
  }

  // ---- launch 2: a block per channel; shared: twiddles, then the correlation (kAcc) ----

  static int64_t taps_shared_elements() { return kTwiddles + kAcc; }

  // Phase 0 (kAcc items): the channel's partial sums added in block order.
  FFTCONV_HD static void sum_partials(const BackwardGeometry& g, const Complex<T>* partial, int64_t c, int item,
                                      Complex<T>* shared) {
    Complex<T> sum = {T(0), T(0)};
    for (int64_t k = 0; k < g.blocks_per_channel; ++k) {
      const Complex<T> v = partial[(c * g.blocks_per_channel + k) * kAcc + item];
      sum.re += v.re;
      sum.im += v.im;
    }
    acc(shared)[item] = sum;
  }

  // Phase 1 (kFreqW items): column f of the correlation back along H, in place.
  FFTCONV_HD static void correlation_columns(int f, Complex<T>* shared) {
    Complex<T>* col = acc(shared) + f;
    Complex<T> a[NH];
    FFTCONV_UNROLL
    for (int h = 0; h < NH; ++h) a[h] = col[h * kFreqW];
    column_inverse<T, NH>(a, col, kFreqW, NH, shared);
  }

  // Phase 2 (ph.tap_count items): the row of kept tap row th back along W
  // (into registers: rows may serve several taps under circular padding), and
  // its kept taps, scaled by 1 / (NH NW), into the weight gradient.
  FFTCONV_HD static void taps(const BackwardGeometry& g, T* grad_weight, int64_t c, int th,
                              const Complex<T>* shared) {
    const Complex<T>* row = acc(shared) + tap_slot(g.ph, th) * kFreqW;
    Complex<T> X[kFreqW];
    FFTCONV_UNROLL
    for (int f = 0; f < kFreqW; ++f) X[f] = row[f];
    T x[NW];
    regfft::real_inverse<T, NW>(X, x, shared + NH);
    const T scale = T(1) / T(NH * NW);
    T* w = grad_weight + (c * g.kernel_h + g.ph.tap_begin + th) * g.kernel_w + g.pw.tap_begin;
    for (int64_t tw = 0; tw < g.pw.tap_count; ++tw) w[tw] = scale * x[tap_slot(g.pw, tw)];
  }
};

}  // namespace small_plane
}  // namespace fftconv
