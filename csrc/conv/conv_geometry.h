// The geometry of a 2-D convolution problem, computed once and shared by the CPU and CUDA
// drivers (1-D convolutions are height-1 2-D ones).
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/geometry.h"

namespace fftconv {

struct ConvGeometry2d {
  int64_t batch, c_in, c_out, groups, cpg, opg;
  int64_t kernel_h, kernel_w;
  AxisGeometry h, w;
  int64_t n_freq_w;  // n_fft_w / 2 + 1
  int64_t n_freq;    // n_fft_h * n_freq_w: frequencies per plane
};

// padding = {top, bottom, left, right}
inline ConvGeometry2d make_conv_geometry(int64_t batch, int64_t c_in, int64_t height, int64_t width,
                                 int64_t c_out, int64_t groups, int64_t kernel_h, int64_t kernel_w,
                                 const int64_t stride[2], const int64_t padding[4],
                                 const int64_t dilation[2], bool circular) {
  ConvGeometry2d p;
  p.batch = batch;
  p.c_in = c_in;
  p.c_out = c_out;
  p.groups = groups;
  p.cpg = c_in / groups;
  p.opg = c_out / groups;
  p.kernel_h = kernel_h;
  p.kernel_w = kernel_w;
  p.h = make_axis_geometry(height, kernel_h, padding[0], padding[1], stride[0], dilation[0], circular);
  p.w = make_axis_geometry(width, kernel_w, padding[2], padding[3], stride[1], dilation[1], circular);
  p.n_freq_w = half_spectrum_length(p.w.n_fft);
  p.n_freq = p.h.n_fft * p.n_freq_w;
  return p;
}

// Work is split into chunks of (batch block x group block) whose spectra fit
// in cache (CPU) or in a memory budget (CUDA).
struct ChunkShape {
  int64_t batch_block;
  int64_t group_block;
};

// At least kMinPlanes planes per chunk (memory permitting): the FFT library
// plans every call, and for long planes (1-D sequences of 64K) planning
// (twiddle factors) costs as much as the transform unless it is amortised.
constexpr int64_t kMinPlanes = 16;
constexpr int64_t kMaxChunkBytes = int64_t(64) << 20;

inline ChunkShape choose_chunk(const ConvGeometry2d& p, int64_t bytes_per_freq, int64_t target_bytes,
                               int64_t min_chunks) {
  const int64_t planes_per_group = p.cpg + p.opg;
  const int64_t plane_bytes = p.n_freq * bytes_per_freq > 0 ? p.n_freq * bytes_per_freq : 1;
  int64_t planes = target_bytes / plane_bytes;
  const int64_t affordable = kMaxChunkBytes / plane_bytes;
  planes = std::max(planes, std::min(kMinPlanes, affordable));
  if (planes < planes_per_group) planes = planes_per_group;
  int64_t gb = planes / planes_per_group;
  if (gb > p.groups) gb = p.groups;
  if (gb < 1) gb = 1;
  int64_t bb = planes / (gb * planes_per_group);
  if (bb > p.batch) bb = p.batch;
  if (bb < 1) bb = 1;
  // Keep every thread busy when the problem allows.
  while (min_chunks > 1 && ((p.batch + bb - 1) / bb) * ((p.groups + gb - 1) / gb) < min_chunks) {
    if (bb > 1) {
      bb = (bb + 1) / 2;
    } else if (gb > 1) {
      gb = (gb + 1) / 2;
    } else {
      break;
    }
  }
  // Blocks of equal size, and as many chunks as a multiple of the threads
  // where the groups allow: otherwise the thread with the last, partial
  // block finishes early and the other's last chunk runs alone (measured
  // ~8% on 384 groups in blocks of 52 over 2 threads).
  int64_t n_gb = ceil_div(p.groups, gb);
  const int64_t n_bb = ceil_div(p.batch, bb);
  if (min_chunks > 1)
    while ((n_gb * n_bb) % min_chunks != 0 && n_gb < p.groups) ++n_gb;
  gb = ceil_div(p.groups, n_gb);
  bb = ceil_div(p.batch, n_bb);
  return {bb, gb};
}

}  // namespace fftconv
