// The chunk transforms through ATen's FFT ops (see fft_backend.h).
#include "cpu/chunk_fft.h"

#include <ATen/Dispatch.h>

#include "core/pointwise.h"

namespace fftconv {
namespace cpu {

at::Tensor forward_spectra(at::Tensor real, int64_t n_h) {
  const int64_t planes = real.size(0), rows = real.size(1), nfw = real.size(2) / 2 + 1;
  const at::ScalarType real_type = real.scalar_type();
  at::Tensor spec = at::_fft_r2c(real, {2}, /*normalization=*/0, /*onesided=*/true).contiguous();
  real.reset();
  if (n_h == 1) return spec.view({planes, nfw, 1});  // one row: both layouts coincide
  at::Tensor cols = at::empty({planes, nfw, n_h}, spec.options());
  AT_DISPATCH_FLOATING_TYPES(real_type, "fftconv_transpose_pad", [&] {
    using C = Complex<scalar_t>;
    const C* in = reinterpret_cast<const C*>(spec.data_ptr());
    C* out = reinterpret_cast<C*>(cols.data_ptr());
    for (int64_t q = 0; q < planes; ++q)
      for (int64_t f = 0; f < nfw; ++f) {
        C* col = out + (q * nfw + f) * n_h;
        // data rows, then the zero rows: two branch-free loops
        for (int64_t r = 0; r < rows; ++r) col[r] = transpose_pad_value(in + q * rows * nfw, rows, nfw, f, r);
        for (int64_t r = rows; r < n_h; ++r) col[r] = C{scalar_t(0), scalar_t(0)};
      }
  });
  spec.reset();
  return at::_fft_c2c(cols, {2}, /*normalization=*/0, /*forward=*/true).contiguous();
}

at::Tensor inverse_rows(at::Tensor spectra, int64_t count, int64_t step, int64_t n_w) {
  const int64_t planes = spectra.size(0), nfw = spectra.size(1), n_h = spectra.size(2);
  if (n_h == 1) return at::_fft_c2r(spectra.view({planes, 1, nfw}), {2}, 0, n_w).contiguous();
  at::Tensor cols = at::_fft_c2c(spectra, {2}, /*normalization=*/0, /*forward=*/false).contiguous();
  spectra.reset();
  at::Tensor rows = at::empty({planes, count, nfw}, cols.options());
  AT_DISPATCH_FLOATING_TYPES(c10::toRealValueType(cols.scalar_type()), "fftconv_transpose_select", [&] {
    using C = Complex<scalar_t>;
    const C* in = reinterpret_cast<const C*>(cols.data_ptr());
    C* out = reinterpret_cast<C*>(rows.data_ptr());
    for (int64_t q = 0; q < planes; ++q)
      for (int64_t i = 0; i < count; ++i)
        for (int64_t f = 0; f < nfw; ++f)
          out[(q * count + i) * nfw + f] = transpose_select_value(in + q * nfw * n_h, n_h, step, i, f);
  });
  cols.reset();
  return at::_fft_c2r(rows, {2}, /*normalization=*/0, n_w).contiguous();
}

}  // namespace cpu
}  // namespace fftconv
