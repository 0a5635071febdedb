// The small-plane correlation: one thread block takes a few planes of
// one channel (consecutive batch elements) of a depthwise, stride-1 problem
// and does the whole pipeline in shared memory: load, real transforms along W
// (a thread per row), transforms along H, product with the kernel spectrum and
// inverse transforms along H (a thread per column, in registers, no memory
// between the three), inverse real transforms along W, crop + bias, store.
// Input and output each cross global memory once; nothing else does except
// the kernel spectrum (one channel's, read by every block of that channel).
// This is the GPU counterpart of the CPU's lane pipeline, where the same idea
// (small planes whole in fast memory, our own transforms) beat the FFT
// library's pipeline.
//
// The phases are plain functions of (block, item): the CUDA kernel
// (cuda/small_plane/launch.cu) runs each phase's items over its threads with a
// barrier between phases, and the host emulation (small_plane_emulation.cpp)
// runs the same functions block by block, item by item, so the CPU tests
// check every index and every transform of the kernel.
#pragma once

#include <cstdint>

#include "conv/conv_geometry.h"
#include "nonfinite/device_checks.h"
#include "core/fast_divide.h"
#include "core/pointwise.h"
#include "core/register_fft.h"
#include "settings.h"

namespace fftconv {
namespace small_plane {

// Transform lengths the kernel is compiled for, on both axes. A plane whose
// alias-free length is below one of them is transformed at that length
// (pad_to_compiled_lengths): a longer transform costs the GPU little next to the
// memory traffic it saves.
constexpr int kLengths[] = {16, 32, 48, 64};

// Smallest compiled length >= n, or 0 when n is larger than all.
inline int small_plane_length(int64_t n) {
  for (int l : kLengths)
    if (n <= l) return l;
  return 0;
}

// Threads per block, and the shared memory a block may use by default: the
// most it gets without opting in (the GPU check sweeps it, see run_small_plane).
constexpr int kThreads = 128;
constexpr int64_t kSharedBytes = kSmallPlaneSharedBytes;  // settings.h
// The backward's blocks hold two buffers a plane and an accumulator: the
// most a block gets without opting in (2 planes a round at 48 x 48).
constexpr int64_t kBackwardSharedBytes = 48 << 10;

// Whether the kernel takes this geometry as it is (lengths already compiled ones).
// Every plane it splits must be non-empty: its item numbers are divided by the
// planes' sides (fast_divide.h), and an empty input axis whose padding still gives
// an output would make a divisor of zero.
inline bool applies(const ConvGeometry2d& p) {
  return p.cpg == 1 && p.opg == 1 && p.h.stride == 1 && p.w.stride == 1 && p.h.n_fft >= 2 &&
         p.h.in_len >= 1 && p.w.in_len >= 1 && p.h.out_len >= 1 && p.w.out_len >= 1 &&
         small_plane_length(p.h.n_fft) == p.h.n_fft && small_plane_length(p.w.n_fft) == p.w.n_fft;
}

// The geometry with its transform lengths raised to compiled ones, when the
// kernel would then take it; otherwise unchanged. Any length at
// least the alias-free one is alias-free (geometry.h); circular padding fixes
// the length at the period, so those plans are never changed.
inline ConvGeometry2d pad_to_compiled_lengths(const ConvGeometry2d& p) {
  if (p.h.circular || p.w.circular || p.h.n_fft < 2) return p;
  const int nh = small_plane_length(p.h.n_fft), nw = small_plane_length(p.w.n_fft);
  if (nh == 0 || nw == 0) return p;
  ConvGeometry2d q = p;
  q.h.n_fft = nh;
  q.w.n_fft = nw;
  q.n_freq_w = half_spectrum_length(nw);
  q.n_freq = q.h.n_fft * q.n_freq_w;
  return applies(q) ? q : p;
}

// One launch: src planes (batch, channels, src_h, src_w) -> dst planes
// (batch, channels, dst_h, dst_w); blocks take planes_per_block batch
// elements of one channel, block = channel * blocks_per_channel + chunk.
struct Geometry {
  int64_t batch, channels;
  int src_h, src_w, dst_h, dst_w;
  int buf_rows;  // rows of a plane's buffer: max(src_h, dst_h)
  int planes_per_block;
  int64_t blocks_per_channel;
  bool adjoint;  // multiply by the conjugate spectrum (the input gradient)
  PlaneDividers src_div, dst_div;  // item numbers into plane, row and column (fast_divide.h)

  int64_t blocks() const { return channels * blocks_per_channel; }
};

// ---- per-thread stages, shared by the forward and the backward kernels ------
// A buffer row holds NW/2+1 complex values: a row of up to NW real samples
// (as T, at its start), then their half spectrum, in place.

// The `width` samples at the start of `row`, zero-padded to NW, transformed
// along W; the half spectrum replaces them.
template <typename T, int NW>
FFTCONV_HD void row_forward(Complex<T>* row, int width, const Complex<T>* tw_w) {
  const T* values = reinterpret_cast<const T*>(row);
  T x[NW];
  FFTCONV_UNROLL
  for (int m = 0; m < NW; ++m) x[m] = pad_load_value(values, width, 1, m);
  Complex<T> X[NW / 2 + 1];
  regfft::real_forward<T, NW>(x, X, tw_w);
  FFTCONV_UNROLL
  for (int f = 0; f <= NW / 2; ++f) row[f] = X[f];
}

// The half spectrum in `row` back along W; its first `width` samples replace it (as T).
template <typename T, int NW>
FFTCONV_HD void row_inverse(Complex<T>* row, int width, const Complex<T>* tw_w) {
  Complex<T> X[NW / 2 + 1];
  FFTCONV_UNROLL
  for (int f = 0; f <= NW / 2; ++f) X[f] = row[f];
  T x[NW];
  regfft::real_inverse<T, NW>(X, x, tw_w);
  T* out = reinterpret_cast<T*>(row);
  FFTCONV_UNROLL
  for (int j = 0; j < NW; ++j)
    if (j < width) out[j] = x[j];
}

// a <- the column col[h * stride], h < rows (zero below), transformed along H.
template <typename T, int NH>
FFTCONV_HD void column_forward(const Complex<T>* col, int stride, int rows, Complex<T>* a, const Complex<T>* tw_h) {
  FFTCONV_UNROLL
  for (int h = 0; h < NH; ++h) a[h] = h < rows ? col[h * stride] : Complex<T>{T(0), T(0)};
  regfft::fft<T, NH>(a, tw_h);
}

// a back along H; rows below `keep` into col[i * stride].
template <typename T, int NH>
FFTCONV_HD void column_inverse(Complex<T>* a, Complex<T>* col, int stride, int keep, const Complex<T>* tw_h) {
  regfft::fft<T, NH, 1, true>(a, tw_h);
  FFTCONV_UNROLL
  for (int i = 0; i < NH; ++i)
    if (i < keep) col[i * stride] = a[i];
}

// Slot of sample e of a contiguous plane `width` wide in a buffer of rows of NW/2+1 complex.
template <typename T, int NW>
FFTCONV_HD T* buffer_sample(Complex<T>* buffer, const FastDivider& width, int e) {
  int r, j;
  width.divmod(e, r, j);
  return reinterpret_cast<T*>(buffer + r * (NW / 2 + 1)) + j;
}

// Twiddle tables at the start of shared memory: exp(-2 pi i k / NH), k < NH,
// then exp(-2 pi i k / NW), k < NW (item < NH + NW).
template <typename T, int NH, int NW>
FFTCONV_HD void fill_twiddle(int item, Complex<T>* shared) {
  shared[item] = item < NH ? regfft::unit_root<T>(item, NH) : regfft::unit_root<T>(item - NH, NW);
}

template <typename T, int NH, int NW>
struct Kernel {
  static constexpr int kFreqW = NW / 2 + 1;
  static_assert(NW % 2 == 0, "real transforms along W need an even length");

  // Shared memory, in Complex<T>: twiddles exp(-2 pi i k / NH) (k < NH) and
  // exp(-2 pi i k / NW) (k < NW), then each plane's buffer of buf_rows x
  // kFreqW: its input rows (as T), their half spectra, the inverse columns,
  // the output rows (as T), each row in the place of the one before.
  static constexpr int kTwiddles = NH + NW;
  FFTCONV_HD static int plane_elements(const Geometry& g) { return g.buf_rows * kFreqW; }
  static int64_t shared_elements(const Geometry& g) {
    return kTwiddles + int64_t(g.planes_per_block) * plane_elements(g);
  }

  static Geometry geometry(const ConvGeometry2d& p, bool adjoint, int64_t shared_bytes = kSharedBytes) {
    Geometry g;
    g.batch = p.batch;
    g.channels = adjoint ? p.c_in : p.c_out;
    g.src_h = static_cast<int>(adjoint ? p.h.out_len : p.h.in_len);
    g.src_w = static_cast<int>(adjoint ? p.w.out_len : p.w.in_len);
    g.dst_h = static_cast<int>(adjoint ? p.h.in_len : p.h.out_len);
    g.dst_w = static_cast<int>(adjoint ? p.w.in_len : p.w.out_len);
    g.buf_rows = g.src_h > g.dst_h ? g.src_h : g.dst_h;
    const int64_t plane_bytes = plane_elements(g) * int64_t(sizeof(Complex<T>));
    int64_t most = (shared_bytes - kTwiddles * int64_t(sizeof(Complex<T>))) / plane_bytes;
    most = most > p.batch ? p.batch : most;
    // Within the budget, the planes per block that leave the fewest idle
    // threads in the column phase (the heaviest: a thread per column of every
    // plane, in passes of kThreads), the fewest planes among equals (more blocks).
    int64_t planes = 1, best_idle = 1, best_total = 1;  // idle share of the best so far: best_idle / best_total
    for (int64_t n = 1; n <= most; ++n) {
      const int64_t items = n * kFreqW, total = (items + kThreads - 1) / kThreads * kThreads;
      if (n == 1 || (total - items) * best_total < best_idle * total)
        planes = n, best_idle = total - items, best_total = total;
    }
    // Split the batch evenly (16 at most 7 a block: 6, 6, 4, not 7, 7, 2): less shared memory a block.
    const int64_t chunks = (p.batch + planes - 1) / planes;
    g.planes_per_block = static_cast<int>((p.batch + chunks - 1) / chunks);
    g.blocks_per_channel = chunks;
    g.adjoint = adjoint;
    g.src_div = PlaneDividers(g.src_h, g.src_w);
    g.dst_div = PlaneDividers(g.dst_h, g.dst_w);
    return g;
  }

  // Block blk's channel, first batch element and number of planes.
  FFTCONV_HD static void block_planes(const Geometry& g, int64_t blk, int64_t& c, int64_t& b0, int& count) {
    c = blk / g.blocks_per_channel;
    b0 = (blk - c * g.blocks_per_channel) * g.planes_per_block;
    const int64_t left = g.batch - b0;
    count = left < g.planes_per_block ? static_cast<int>(left) : g.planes_per_block;
  }

  FFTCONV_HD static Complex<T>* plane_buffer(const Geometry& g, Complex<T>* shared, int q) {
    return shared + kTwiddles + q * plane_elements(g);
  }
  FFTCONV_HD static const Complex<T>* plane_buffer(const Geometry& g, const Complex<T>* shared, int q) {
    return shared + kTwiddles + q * plane_elements(g);
  }

  // ---- the phases; each takes items [0, count) -------------------------------

  // Phase 0: the twiddle tables (kTwiddles items) and the block's input planes,
  // element by element so that global reads are coalesced (count * src_h * src_w items).
  // load returns the value, for the device checks' NaN/Inf flag (device_checks.h).
  // (c, b0): the block's channel and first batch element (block_planes).
  FFTCONV_HD static void fill_twiddle(int item, Complex<T>* shared) { small_plane::fill_twiddle<T, NH, NW>(item, shared); }
  FFTCONV_HD static int load_items(const Geometry& g, int count) { return count * g.src_h * g.src_w; }
  FFTCONV_HD static T load(const Geometry& g, const T* src, int64_t c, int64_t b0, int item, Complex<T>* shared) {
    int q, e;
    g.src_div.plane.divmod(item, q, e);
    const T v = src[((b0 + q) * g.channels + c) * int64_t(g.src_div.plane.divisor) + e];
    *buffer_sample<T, NW>(plane_buffer(g, shared, q), g.src_div.w, e) = v;
    return v;
  }

  // Phase 1: real transform along W of row r of plane q (item q * src_h + r),
  // zero-padded to NW; its half spectrum replaces it.
  FFTCONV_HD static int row_items(const Geometry& g, int count) { return count * g.src_h; }
  FFTCONV_HD static void rows_forward(const Geometry& g, int item, Complex<T>* shared) {
    int q, r;
    g.src_div.h.divmod(item, q, r);
    row_forward<T, NW>(plane_buffer(g, shared, q) + r * kFreqW, g.src_w, shared + NH);
  }

  // Phase 2: column f of plane q (item q * kFreqW + f): transform along H
  // (rows past src_h are zero), times the kernel spectrum (conjugated for the
  // adjoint), inverse along H; rows below dst_h are kept.
  FFTCONV_HD static int column_items(int count) { return count * kFreqW; }
  FFTCONV_HD static void columns(const Geometry& g, const Complex<T>* spectrum, int64_t c, int item,
                                 Complex<T>* shared) {
    const int q = item / kFreqW, f = item - q * kFreqW;
    Complex<T>* col = plane_buffer(g, shared, q) + f;
    const Complex<T>* s = spectrum + c * int64_t(NH * kFreqW) + f;  // (channels, NH, kFreqW), row-major planes
    Complex<T> a[NH];
    column_forward<T, NH>(col, kFreqW, g.src_h, a, shared);
    FFTCONV_UNROLL
    for (int h = 0; h < NH; ++h) a[h] = g.adjoint ? cmul_conj(a[h], s[h * kFreqW]) : cmul(a[h], s[h * kFreqW]);
    column_inverse<T, NH>(a, col, kFreqW, g.dst_h, shared);
  }

  // Phase 3: inverse real transform along W of output row i of plane q (item
  // q * dst_h + i); its first dst_w values replace it.
  FFTCONV_HD static int out_row_items(const Geometry& g, int count) { return count * g.dst_h; }
  FFTCONV_HD static void rows_inverse(const Geometry& g, int item, Complex<T>* shared) {
    int q, i;
    g.dst_div.h.divmod(item, q, i);
    row_inverse<T, NW>(plane_buffer(g, shared, q) + i * kFreqW, g.dst_w, shared + NH);
  }

  // Phase 4: crop + bias into dst, element by element (coalesced writes;
  // count * dst_h * dst_w items).
  FFTCONV_HD static int store_items(const Geometry& g, int count) { return count * g.dst_h * g.dst_w; }
  FFTCONV_HD static void store(const Geometry& g, const T* bias, T* dst, int64_t c, int64_t b0, int item,
                               const Complex<T>* shared) {
    int q, e, i, j;
    g.dst_div.plane.divmod(item, q, e);
    g.dst_div.w.divmod(e, i, j);
    const T* row = reinterpret_cast<const T*>(plane_buffer(g, shared, q) + i * kFreqW);
    dst[((b0 + q) * g.channels + c) * int64_t(g.dst_div.plane.divisor) + e] =
        crop_store_value(row, 1, j, bias ? bias[c] : T(0));
  }
};

// Calls f(std::integral_constant<int, NH>, std::integral_constant<int, NW>)
// for the compiled lengths (nh, nw); false when they are not compiled ones.
template <int NH, int NW>
struct Lengths {
  static constexpr int h = NH, w = NW;
};
template <typename F>
bool with_lengths(int64_t nh, int64_t nw, F&& f) {
#define FFTCONV_SMALL_PLANE_W(NH)              \
  switch (nw) {                                \
    case 16: f(Lengths<NH, 16>()); return true; \
    case 32: f(Lengths<NH, 32>()); return true; \
    case 48: f(Lengths<NH, 48>()); return true; \
    case 64: f(Lengths<NH, 64>()); return true; \
    default: return false;                     \
  }
  switch (nh) {
    case 16: FFTCONV_SMALL_PLANE_W(16)
    case 32: FFTCONV_SMALL_PLANE_W(32)
    case 48: FFTCONV_SMALL_PLANE_W(48)
    case 64: FFTCONV_SMALL_PLANE_W(64)
    default: return false;
  }
#undef FFTCONV_SMALL_PLANE_W
}

}  // namespace small_plane
}  // namespace fftconv
