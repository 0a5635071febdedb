// long_conv1d: a composite over conv2d_forward, registered for every backend
// (CompositeImplicitAutograd), so autograd, CUDA and torch.compile come from the conv op.
#include <ATen/ATen.h>
#include <torch/library.h>

namespace fftconv {
namespace {

// Long 1-D convolution (S4 / SGConv / Hyena style, docs/design.md §11):
// causal y[t] = sum_{s<=t} k[s] u[t-s] is a correlation with the flipped
// kernel and Lk-1 zeros on the left, so the FFT length is L + Lk - 1 rounded
// up (docs/design.md §1 gives exactly §11); circular is the same with circular
// padding, i.e. N = L. Composite: autograd and torch.compile go through
// conv2d_forward and its registered backward.
at::Tensor long_conv1d(const at::Tensor& u, const at::Tensor& k, const std::optional<at::Tensor>& D,
                       bool causal) {
  TORCH_CHECK(u.dim() == 3, "fftconv.long_conv1d: u must be (B, C, L), got ", u.sizes());
  TORCH_CHECK(k.dim() == 2, "fftconv.long_conv1d: k must be (C, Lk), got ", k.sizes());
  const int64_t C = u.size(1), L = u.size(2), Lk = k.size(1);
  TORCH_CHECK(k.size(0) == C, "fftconv.long_conv1d: k has ", k.size(0), " channels, u has ", C);
  TORCH_CHECK(Lk >= 1 && Lk <= L, "fftconv.long_conv1d: kernel length must be in [1, L = ", L, "], got ", Lk);
  static const auto conv = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("fftconv::conv2d_forward", "")
                               .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                                 const std::optional<at::Tensor>&, at::IntArrayRef,
                                                 at::IntArrayRef, at::IntArrayRef, int64_t, bool)>();
  at::Tensor w = k.flip({1}).view({C, 1, 1, Lk});
  at::Tensor y = conv.call(u.unsqueeze(2), w, std::nullopt, {1, 1}, {0, 0, Lk - 1, 0}, {1, 1}, C, !causal)
                     .squeeze(2);
  if (D.has_value() && D->defined()) {
    TORCH_CHECK(D->dim() == 1 && D->size(0) == C, "fftconv.long_conv1d: D must be (C,) = (", C, ",), got ",
                D->sizes());
    y = y + D->view({1, C, 1}) * u;
  }
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(fftconv, CompositeImplicitAutograd, m) { m.impl("long_conv1d", &long_conv1d); }

}  // namespace fftconv
