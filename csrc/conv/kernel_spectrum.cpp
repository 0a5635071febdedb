#include "conv/kernel_spectrum.h"

#include <vector>

namespace fftconv {

namespace {

// Scratch per block of output channels (the placed real taps; the block's
// transform is as large again): small on the CPU, where with the cache off a
// pipeline makes a group block's spectra beside its chunk (spectrum_cache.h);
// on CUDA only a bound on launches, memory there is not that tight.
constexpr int64_t kCpuBlockBytes = int64_t(128) << 10;
constexpr int64_t kCudaBlockBytes = int64_t(64) << 20;

// Flat slot (row * n_w + col) of each kept tap, in tap order.
at::Tensor tap_slots(const ConvGeometry2d& geom, const at::Device& device) {
  std::vector<int64_t> slots;
  slots.reserve(geom.h.tap_count * geom.w.tap_count);
  for (int64_t th = 0; th < geom.h.tap_count; ++th)
    for (int64_t tw = 0; tw < geom.w.tap_count; ++tw)
      slots.push_back(tap_slot(geom.h, th) * geom.w.n_fft + tap_slot(geom.w, tw));
  return at::tensor(slots, at::TensorOptions().dtype(at::kLong)).to(device);
}

// Spectra of output channels [o0, o0 + dst.size(0)) into dst (a contiguous
// slice of the result, in the device's layout).
void write_block(const at::Tensor& weight, const ConvGeometry2d& geom, const at::Tensor& slots, int64_t o0,
                 at::Tensor dst) {
  const int64_t count = dst.size(0);
  const int64_t rows = count * geom.cpg;
  const int64_t n_h = geom.h.n_fft, n_w = geom.w.n_fft;
  at::Tensor placed = at::zeros({rows, n_h * n_w}, weight.options());
  if (geom.h.tap_count > 0 && geom.w.tap_count > 0) {
    at::Tensor kept = weight.narrow(0, o0, count)
                          .narrow(2, geom.h.tap_begin, geom.h.tap_count)
                          .narrow(3, geom.w.tap_begin, geom.w.tap_count)
                          .reshape({rows, geom.h.tap_count * geom.w.tap_count});
    // index_add accumulates: circular padding folds taps beyond one period
    // onto the same slot (docs/design.md §8).
    placed.index_add_(1, slots, kept);
  }
  at::Tensor spec = at::_fft_r2c(placed.view({count, geom.cpg, n_h, n_w}), {2, 3}, /*normalization=*/0,
                                 /*onesided=*/true);
  placed.reset();
  // The layout of the device's input spectra (see pointwise.h): row-major
  // planes on CUDA (2-D cuFFT plans), column-major on the CPU.
  dst.copy_(weight.is_cuda() ? spec : spec.transpose(2, 3));
  at::conj_physical_(dst).mul_(1.0 / static_cast<double>(n_h * n_w));
}

}  // namespace

at::Tensor kernel_spectrum(const at::Tensor& weight, const ConvGeometry2d& geom, int64_t out_begin, int64_t out_count) {
  const int64_t n_h = geom.h.n_fft, n_w = geom.w.n_fft;
  const auto complex_opts = weight.options().dtype(c10::toComplexType(weight.scalar_type()));
  at::Tensor result = weight.is_cuda() ? at::empty({out_count, geom.cpg, n_h, geom.n_freq_w}, complex_opts)
                                       : at::empty({out_count, geom.cpg, geom.n_freq_w, n_h}, complex_opts);
  if (out_count == 0 || geom.cpg == 0) return result;
  const at::Tensor slots = tap_slots(geom, weight.device());
  const int64_t per_out = geom.cpg * n_h * n_w * static_cast<int64_t>(weight.element_size());
  const int64_t budget = weight.is_cuda() ? kCudaBlockBytes : kCpuBlockBytes;
  const int64_t block = std::max<int64_t>(1, budget / std::max<int64_t>(per_out, 1));
  for (int64_t o = 0; o < out_count; o += block)
    write_block(weight, geom, slots, out_begin + o, result.narrow(0, o, std::min(block, out_count - o)));
  return result;
}

}  // namespace fftconv
