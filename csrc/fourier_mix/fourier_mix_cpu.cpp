// CPU fourier_mix: planes go through in chunks of a few (one per thread for
// large planes): rfft2 of the chunk into a half-spectrum buffer reused across
// chunks (MKL parallelises the chunk's transforms), then the real part is
// written out and mirrored in parallel over rows. Extra memory: one chunk of
// half spectra, never a full complex (P, N, D) tensor.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include <torch/library.h>

#include "fourier_mix/fourier_mix.h"

namespace fftconv {
namespace {

constexpr int64_t kChunkBytes = int64_t(16) << 20;  // half spectra per chunk

template <typename T>
void mirror_chunk(const at::Tensor& half, T* out, int64_t planes, int64_t n_tok, int64_t d, T scale) {
  const int64_t n_half = d / 2 + 1;
  const Complex<T>* h = reinterpret_cast<const Complex<T>*>(half.data_ptr());
  const int64_t rows = planes * n_tok;
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(d, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t q = row / n_tok, k = row % n_tok;
      const Complex<T>* plane = h + q * n_tok * n_half;
      T* dst = out + row * d;
      for (int64_t l = 0; l < d; ++l) dst[l] = fourier_mix_value(plane, n_tok, d, n_half, k, l, scale);
    }
  });
}

}  // namespace

namespace {
at::Tensor fourier_mix_cpu(const at::Tensor& x, const std::string& norm) {
  const FourierMixCall c = prepare_fourier_mix(x, norm);
  if (c.out.numel() == 0) return c.result(x);
  const int64_t chunk = std::min<int64_t>(
      c.planes, std::max<int64_t>(at::get_num_threads(), kChunkBytes / std::max<int64_t>(c.half_plane_bytes(), 1)));
  at::Tensor half = at::empty({chunk, c.n_tok, c.n_half}, x.options().dtype(c10::toComplexType(c.compute)));
  AT_DISPATCH_FLOATING_TYPES(c.compute, "fftconv_fourier_mix_cpu", [&] {
    scalar_t* o = c.out.data_ptr<scalar_t>();
    for (int64_t p0 = 0; p0 < c.planes; p0 += chunk) {
      const int64_t np = std::min(chunk, c.planes - p0);
      at::Tensor buf = half.narrow(0, 0, np);
      at::_fft_r2c_out(buf, c.src.narrow(0, p0, np), {1, 2}, /*normalization=*/0, /*onesided=*/true);
      mirror_chunk<scalar_t>(buf, o + p0 * c.n_tok * c.d, np, c.n_tok, c.d, static_cast<scalar_t>(c.scale));
    }
  });
  return c.result(x);
}
}  // namespace

TORCH_LIBRARY_IMPL(fftconv, CPU, m) {
  m.impl("fourier_mix", [](const at::Tensor& x, c10::string_view norm) { return fourier_mix_cpu(x, std::string(norm)); });
}

}  // namespace fftconv
