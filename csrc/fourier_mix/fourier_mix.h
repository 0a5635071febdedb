// fourier_mix(x) = Re(FFT2(x)) over the last two dimensions (FNet token
// mixing, docs/design.md §10), for real x viewed as planes (P, N, D).
//
// Real-input symmetry: the 2-D spectrum Y of a real plane is Hermitian,
// Y[k][l] = conj(Y[(N-k)%N][(D-l)%D]), so its real part is fully known from
// the half spectrum H = rfft2(x) of D/2+1 columns (one real-to-complex pass
// along D, one complex pass along N): columns l <= D/2 read H directly, the
// others mirror, Re Y[k][l] = Re H[(N-k)%N][D-l]. No full complex spectrum
// is ever built, and half of the work of a complex FFT2 is skipped.
//
// Re(F x) for a real x is C x with C the (symmetric) cosine matrix, so the
// operator is self-adjoint: its backward is fourier_mix of the gradient with
// the same normalisation.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

#include "core/pointwise.h"

namespace fftconv {

// Output element (k, l) of one plane from its half spectrum (N rows of
// n_half = D/2+1 columns, row-major), times `scale` (the normalisation).
template <typename T>
FFTCONV_HD T fourier_mix_value(const Complex<T>* half, int64_t n_tok, int64_t d, int64_t n_half,
                               int64_t k, int64_t l, T scale) {
  if (l < n_half) return scale * half[k * n_half + l].re;
  const int64_t k_mirror = k == 0 ? 0 : n_tok - k;
  return scale * half[k_mirror * n_half + (d - l)].re;
}

// Scale of the forward transform for torch.fft's norm names.
double fourier_mix_scale(const std::string& norm, int64_t n_tok, int64_t d);

// A checked call, shared by the devices: the input as contiguous planes
// (P, N, D) in the compute dtype (float32 for float16/bfloat16; a copy
// whenever the caller's tensor is not already that, so it is never written),
// the output in the compute dtype, and the normalisation.
struct FourierMixCall {
  at::ScalarType compute;
  int64_t n_tok, d, planes, n_half;
  double scale;
  at::Tensor src;  // (P, N, D); undefined when the output is empty
  at::Tensor out;  // shape of x, compute dtype
  int64_t half_plane_bytes() const { return n_tok * n_half * (compute == at::kDouble ? 16 : 8); }
  // The output in the input's dtype.
  at::Tensor result(const at::Tensor& x) const { return compute == x.scalar_type() ? out : out.to(x.scalar_type()); }
};
FourierMixCall prepare_fourier_mix(const at::Tensor& x, const std::string& norm);


}  // namespace fftconv
