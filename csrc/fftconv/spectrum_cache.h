// Kernel spectra cached across calls (DESIGN.md §2 rule 5): inference reuses
// the spectrum of an unchanged weight, and the backward pass reuses the
// forward's. Thread-safe, LRU-bounded.
//
// An entry is valid when the weight's values are bitwise those the spectrum
// was made from: an exact comparison with a stored copy, O(weight), tiny next
// to the transforms. Nothing can make it stale, edits through `.data` (which
// bump no version counter; torch.autograd.gradcheck perturbs that way)
// included. On CUDA the comparison synchronises with the device, as the
// finiteness check of every call already does.
#pragma once

#include <ATen/ATen.h>

#include "conv_plan.h"

namespace fftconv {

at::Tensor cached_kernel_spectrum(const at::Tensor& weight, const ConvPlan2d& plan);

void set_spectrum_cache_limit(int64_t entries);
int64_t spectrum_cache_limit();
int64_t spectrum_cache_size();
void clear_spectrum_cache();

}  // namespace fftconv
