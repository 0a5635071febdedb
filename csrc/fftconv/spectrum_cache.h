// Kernel spectra cached across calls (DESIGN.md §2 rule 5): inference reuses
// the spectrum of an unchanged weight, and the backward pass reuses the
// forward's. Thread-safe, LRU-bounded.
//
// When is an entry valid?
//  - CPU: when the weight's values are bitwise those the spectrum was made
//    from (an exact comparison with a stored copy: O(weight), tiny next to the
//    transforms). Nothing can make it stale, edits through .data included.
//  - CUDA (a comparison would synchronise the device): when it is the same
//    live weight tensor, same storage and same version counter, and only
//    while autograd is not recording for the weight (inference). In-place
//    edits, optimizer steps and load_state_dict bump the version; an edit
//    through `.data` does not: call fftconv_ext.clear_caches() after one.
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
