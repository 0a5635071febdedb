#include "kernel_spectrum.h"

#include <vector>

namespace fftconv {

namespace {

// Flat slot (row * n_w + col) of each kept tap, in tap order.
at::Tensor tap_slots(const ConvPlan2d& plan, const at::Device& device) {
  std::vector<int64_t> slots;
  slots.reserve(plan.h.tap_count * plan.w.tap_count);
  for (int64_t th = 0; th < plan.h.tap_count; ++th)
    for (int64_t tw = 0; tw < plan.w.tap_count; ++tw)
      slots.push_back(tap_slot(plan.h, th) * plan.w.n_fft + tap_slot(plan.w, tw));
  return at::tensor(slots, at::TensorOptions().dtype(at::kLong)).to(device);
}

}  // namespace

at::Tensor kernel_spectrum(const at::Tensor& weight, const ConvPlan2d& plan) {
  const int64_t rows = plan.c_out * plan.cpg;
  const int64_t n_h = plan.h.n_fft, n_w = plan.w.n_fft;
  at::Tensor placed = at::zeros({rows, n_h * n_w}, weight.options());
  if (plan.h.tap_count > 0 && plan.w.tap_count > 0) {
    at::Tensor kept = weight.narrow(2, plan.h.tap_begin, plan.h.tap_count)
                          .narrow(3, plan.w.tap_begin, plan.w.tap_count)
                          .reshape({rows, plan.h.tap_count * plan.w.tap_count});
    // index_add accumulates: circular padding folds taps beyond one period
    // onto the same slot (rule 8).
    placed.index_add_(1, tap_slots(plan, weight.device()), kept);
  }
  placed = placed.view({plan.c_out, plan.cpg, n_h, n_w});
  const double scale = 1.0 / static_cast<double>(n_h * n_w);
  at::Tensor spec = at::_fft_r2c(placed, {2, 3}, /*normalization=*/0, /*onesided=*/true);
  placed.reset();  // in place from here on: at most two spectrum-sized buffers live
  at::conj_physical_(spec).mul_(scale);
  // The layout of the device's input spectra (see pointwise.h): row-major
  // planes on CUDA (2-D cuFFT plans), column-major on the CPU.
  if (weight.is_cuda()) return spec;
  return spec.transpose(2, 3).contiguous();
}

}  // namespace fftconv
