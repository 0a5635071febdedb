// The kernel spectrum (DESIGN.md §2 rule 3): kept taps placed at their shifted
// slots, transformed, conjugated and scaled by 1/(n_h*n_w), so the forward
// product is a plain multiply and the inverse transform needs no roll.
#pragma once

#include <ATen/ATen.h>

#include "conv_plan.h"

namespace fftconv {

// weight: (C_out, C_in/groups, kh, kw), float or double, any device.
// Returns complex (C_out, C_in/groups, n_w/2+1, n_h), contiguous: column-major
// planes, like the input spectra.
at::Tensor kernel_spectrum(const at::Tensor& weight, const ConvPlan2d& plan);

}  // namespace fftconv
