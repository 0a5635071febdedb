#include "nonfinite/direct_fallback.h"

#include <algorithm>
#include <cmath>

namespace fftconv {
namespace {

// Padding split the way F.conv2d applies it: zero padding's symmetric part
// inside the convolution (so that non-finite weights meet the padding exactly
// as in F.conv2d on each device: cuDNN skips padded taps, im2col multiplies
// them), any asymmetric remainder (padding="same" with an even kernel) and all
// circular padding as explicit slots.
struct PaddingSplit {
  int64_t inner[2];     // h, w: passed to the convolution
  int64_t explicit_[4];  // top, bottom, left, right: padded into the tensor
};

PaddingSplit split_padding(const ConvArgs& a) {
  PaddingSplit s{};
  for (int axis = 0; axis < 2; ++axis) {
    const int64_t before = a.padding[2 * axis], after = a.padding[2 * axis + 1];
    s.inner[axis] = a.circular ? 0 : std::min(before, after);
    s.explicit_[2 * axis] = before - s.inner[axis];
    s.explicit_[2 * axis + 1] = after - s.inner[axis];
  }
  return s;
}

// The input with the explicit part of the padding (zeros or circular).
at::Tensor padded(const at::Tensor& x, const ConvArgs& a, const PaddingSplit& s) {
  const std::vector<int64_t> pads = {s.explicit_[2], s.explicit_[3], s.explicit_[0], s.explicit_[1]};
  if (a.circular) return at::pad(x, pads, "circular");
  return at::constant_pad_nd(x, pads, 0);
}

// Slot m of the padded axis comes from input index src[m] (or nowhere, -1).
std::vector<int64_t> padded_sources(int64_t len, int64_t before, int64_t after, bool circular) {
  std::vector<int64_t> src(len + before + after);
  for (int64_t m = 0; m < static_cast<int64_t>(src.size()); ++m) {
    const int64_t i = m - before;
    src[m] = circular ? ((i % len) + len) % len : (i >= 0 && i < len ? i : -1);
  }
  return src;
}

// Adjoint of `padded` along one axis: sum each padded slot into its source.
at::Tensor unpad_axis(const at::Tensor& g, int64_t dim, int64_t len, int64_t before, int64_t after,
                      bool circular) {
  const std::vector<int64_t> src = padded_sources(len, before, after, circular);
  std::vector<int64_t> keep, to;
  for (int64_t m = 0; m < static_cast<int64_t>(src.size()); ++m)
    if (src[m] >= 0) {
      keep.push_back(m);
      to.push_back(src[m]);
    }
  const auto idx_opts = at::TensorOptions().dtype(at::kLong);
  at::Tensor kept = g.index_select(dim, at::tensor(keep, idx_opts).to(g.device()));
  std::vector<int64_t> shape = g.sizes().vec();
  shape[dim] = len;
  return at::zeros(shape, g.options()).index_add_(dim, at::tensor(to, idx_opts).to(g.device()), kept);
}

}  // namespace

bool all_finite(const at::Tensor& t) {
  if (t.numel() == 0) return true;
  // in the tensor's own precision: a float64 accumulation is 50x slower here
  return std::isfinite(t.sum().item<double>());
}

bool all_finite(at::TensorList ts) {
  at::Tensor total;
  for (const at::Tensor& t : ts) {
    if (t.numel() == 0) continue;
    total = total.defined() ? total + t.sum() : t.sum();
  }
  return !total.defined() || std::isfinite(total.item<double>());
}

at::Tensor direct_forward(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                          const ConvArgs& a) {
  const PaddingSplit s = split_padding(a);
  return at::convolution(padded(input, a, s), weight,
                         bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt,
                         {a.stride[0], a.stride[1]}, {s.inner[0], s.inner[1]}, {a.dilation[0], a.dilation[1]},
                         false, {0, 0}, a.groups);
}

at::Tensor direct_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                             at::IntArrayRef input_size, const ConvArgs& a) {
  const PaddingSplit s = split_padding(a);
  std::vector<int64_t> padded_size = input_size.vec();
  padded_size[2] += s.explicit_[0] + s.explicit_[1];
  padded_size[3] += s.explicit_[2] + s.explicit_[3];
  // convolution_backward reads the input only for the weight gradient: a zero
  // stand-in of the padded shape serves for the input gradient.
  at::Tensor stand_in = at::zeros(padded_size, grad_output.options());
  auto grads = at::convolution_backward(grad_output, stand_in, weight, std::nullopt, {a.stride[0], a.stride[1]},
                                        {s.inner[0], s.inner[1]}, {a.dilation[0], a.dilation[1]}, false, {0, 0},
                                        a.groups, {true, false, false});
  at::Tensor g = std::get<0>(grads);
  if (s.explicit_[0] + s.explicit_[1] > 0)
    g = unpad_axis(g, 2, input_size[2], s.explicit_[0], s.explicit_[1], a.circular);
  if (s.explicit_[2] + s.explicit_[3] > 0)
    g = unpad_axis(g, 3, input_size[3], s.explicit_[2], s.explicit_[3], a.circular);
  return g.contiguous();
}

at::Tensor direct_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                              at::IntArrayRef weight_size, const ConvArgs& a) {
  at::Tensor w_stand_in = at::zeros(weight_size, input.options());
  const PaddingSplit s = split_padding(a);
  auto grads = at::convolution_backward(grad_output, padded(input, a, s), w_stand_in, std::nullopt,
                                        {a.stride[0], a.stride[1]}, {s.inner[0], s.inner[1]},
                                        {a.dilation[0], a.dilation[1]}, false, {0, 0}, a.groups,
                                        {false, true, false});
  return std::get<1>(grads).contiguous();
}

}  // namespace fftconv
