// Argument checks and normalisation of fourier_mix, shared by both devices.
#include "fourier_mix/fourier_mix.h"

#include <cmath>

namespace fftconv {

double fourier_mix_scale(const std::string& norm, int64_t n_tok, int64_t d) {
  const double n = static_cast<double>(n_tok) * static_cast<double>(d);
  if (norm == "backward") return 1.0;
  if (norm == "ortho") return 1.0 / std::sqrt(n);
  return 1.0 / n;  // "forward"
}

namespace {

at::ScalarType fourier_mix_compute_dtype(const at::Tensor& x, const std::string& norm) {
  TORCH_CHECK_VALUE(norm == "backward" || norm == "ortho" || norm == "forward",
                    "fftconv.fourier_mix: norm must be \"backward\", \"ortho\" or \"forward\", got \"",
                    norm, "\"");
  TORCH_CHECK_VALUE(x.dim() >= 2, "fftconv.fourier_mix: x must have at least 2 dimensions (..., tokens, hidden), got ",
                    x.dim(), "-D of shape ", x.sizes());
  const at::ScalarType t = x.scalar_type();
  TORCH_CHECK_TYPE(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16,
                   "fftconv.fourier_mix: x must be a real floating tensor (float16, bfloat16, float32 or "
                   "float64), got ", t);
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

}  // namespace

FourierMixCall prepare_fourier_mix(const at::Tensor& x, const std::string& norm) {
  FourierMixCall c;
  c.compute = fourier_mix_compute_dtype(x, norm);
  c.n_tok = x.size(-2);
  c.d = x.size(-1);
  c.n_half = c.d / 2 + 1;
  c.planes = c.n_tok * c.d == 0 ? 0 : x.numel() / (c.n_tok * c.d);
  c.scale = fourier_mix_scale(norm, c.n_tok, c.d);
  c.out = at::empty(x.sizes(), x.options().dtype(c.compute));
  if (c.out.numel() > 0) c.src = x.to(c.compute).contiguous().view({c.planes, c.n_tok, c.d});
  return c;
}

}  // namespace fftconv
