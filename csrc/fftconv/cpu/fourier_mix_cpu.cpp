// CPU fourier_mix: planes go through in chunks of a few (one per thread for
// large planes): rfft2 of the chunk into a half-spectrum buffer reused across
// chunks (MKL parallelises the chunk's transforms), then the real part is
// written out and mirrored in parallel over rows. Extra memory: one chunk of
// half spectra, never a full complex (P, N, D) tensor.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "../fourier_mix.h"

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

at::Tensor fourier_mix_cpu(const at::Tensor& x, const std::string& norm) {
  const at::ScalarType compute = fourier_mix_compute_dtype(x, norm);
  const int64_t n_tok = x.size(-2), d = x.size(-1);
  const int64_t planes = n_tok * d == 0 ? 0 : x.numel() / (n_tok * d);
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(compute));
  if (out.numel() == 0) return out.to(x.scalar_type());
  // Own copy in the compute dtype when needed (never the caller's storage
  // written, non-contiguous views gathered once).
  const at::Tensor src = x.to(compute).contiguous().view({planes, n_tok, d});
  const int64_t n_half = d / 2 + 1;
  const int64_t elem = compute == at::kDouble ? 16 : 8;
  const int64_t plane_bytes = n_tok * n_half * elem;
  const int64_t chunk = std::min<int64_t>(
      planes, std::max<int64_t>(at::get_num_threads(), kChunkBytes / std::max<int64_t>(plane_bytes, 1)));
  at::Tensor half = at::empty({chunk, n_tok, n_half}, x.options().dtype(c10::toComplexType(compute)));
  const double scale = fourier_mix_scale(norm, n_tok, d);
  AT_DISPATCH_FLOATING_TYPES(compute, "fftconv_fourier_mix_cpu", [&] {
    scalar_t* o = out.data_ptr<scalar_t>();
    for (int64_t p0 = 0; p0 < planes; p0 += chunk) {
      const int64_t np = std::min(chunk, planes - p0);
      at::Tensor buf = half.narrow(0, 0, np);
      at::_fft_r2c_out(buf, src.narrow(0, p0, np), {1, 2}, /*normalization=*/0, /*onesided=*/true);
      mirror_chunk<scalar_t>(buf, o + p0 * n_tok * d, np, n_tok, d, static_cast<scalar_t>(scale));
    }
  });
  return compute == x.scalar_type() ? out : out.to(x.scalar_type());
}

}  // namespace fftconv
