// The CPU transforms of one chunk of planes: ATen's FFT ops (MKL inside x86
// builds of torch, pocketfft elsewhere), called from inside the driver's
// parallel loop, where each call runs single-threaded on a cache-sized chunk.
//
// Why ATen and not a dedicated library: calling MKL's DFTI directly (with
// per-thread descriptors writing straight into the column-major layout, no
// transposes) was built and measured on the project's 2-core machine: no
// faster at one thread (64 vs 66 ms for a 31x31 depthwise layer on
// (16, 384, 32, 32)) and slower at two (49 vs 32 ms, MKL's threading layer
// fighting the driver's). ATen's per-call overhead (~6 us) is small next to a
// chunk's transforms.
//
// Layouts: real rows are row-major (P, rows, n_w); spectra are column-major
// planes (P, n_w/2+1, n_h) (pointwise.h). Unnormalised in both directions;
// the 1/N lives in the kernel spectrum.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace fftconv {
namespace cpu {

// real (P, rows, n_w), contiguous -> spectra (P, n_w/2+1, n_h), contiguous:
// every row transformed along W, zero rows added up to n_h while transposing
// (docs/design.md §4), then every column transformed along H.
// Takes `real` by value and drops it as soon as it is transformed (peak memory).
at::Tensor forward_spectra(at::Tensor real, int64_t n_h);

// spectra (P, n_w/2+1, n_h) -> real (P, count, n_w), contiguous: inverse along
// H, then inverse along W for rows 0, step, ..., (count-1)*step only.
// Takes `spectra` by value and drops it after the first pass (peak memory).
at::Tensor inverse_rows(at::Tensor spectra, int64_t count, int64_t step, int64_t n_w);

}  // namespace cpu
}  // namespace fftconv
