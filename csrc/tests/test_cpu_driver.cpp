// The CPU driver against a direct loop, in float64, through the C++ API
// (built only when CMake finds libtorch).
#include <ATen/ATen.h>

#include <cmath>

#include "cpu/conv_cpu.h"
#include "tests/check.h"

using namespace fftconv;

static at::Tensor direct_conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, const ConvArgs& a) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), cpg = w.size(1), kh = w.size(2), kw = w.size(3), G = a.groups, opg = O / G;
  const int64_t oh = conv_output_length(H, kh, a.padding[0], a.padding[1], a.stride[0], a.dilation[0]);
  const int64_t ow = conv_output_length(W, kw, a.padding[2], a.padding[3], a.stride[1], a.dilation[1]);
  at::Tensor y = at::zeros({B, O, oh, ow}, x.options());
  auto X = x.accessor<double, 4>();
  auto Wt = w.accessor<double, 4>();
  auto Y = y.accessor<double, 4>();
  for (int64_t n = 0; n < B; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double acc = b.defined() ? b[o].item<double>() : 0.0;
          const int64_t g = o / opg;
          for (int64_t c = 0; c < cpg; ++c)
            for (int64_t p = 0; p < kh; ++p)
              for (int64_t q = 0; q < kw; ++q) {
                const int64_t r = i * a.stride[0] + p * a.dilation[0] - a.padding[0];
                const int64_t s = j * a.stride[1] + q * a.dilation[1] - a.padding[2];
                if (r >= 0 && r < H && s >= 0 && s < W) acc += X[n][g * cpg + c][r][s] * Wt[o][c][p][q];
              }
          Y[n][o][i][j] = acc;
        }
  (void)C;
  return y;
}

static double rel(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

int main() {
  at::manual_seed(0);
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  struct Case { int64_t B, C, O, G, H, W, kh, kw, s0, s1, d0, d1, pt, pb, pl, pr; };
  const Case cases[] = {
      {2, 4, 4, 4, 16, 17, 7, 7, 1, 1, 1, 1, 3, 3, 3, 3},
      {2, 4, 6, 2, 13, 11, 4, 5, 2, 1, 1, 2, 1, 2, 0, 3},
      {1, 3, 2, 1, 9, 8, 13, 11, 1, 1, 1, 1, 6, 6, 5, 5},
  };
  for (const Case& c : cases) {
    ConvArgs a{{c.s0, c.s1}, {c.pt, c.pb, c.pl, c.pr}, {c.d0, c.d1}, c.G, false};
    at::Tensor x = at::randn({c.B, c.C, c.H, c.W}, opts);
    at::Tensor w = at::randn({c.O, c.C / c.G, c.kh, c.kw}, opts);
    at::Tensor b = at::randn({c.O}, opts);
    at::Tensor ref = direct_conv(x, w, b, a);
    at::Tensor y = conv2d_forward_cpu(x, w, b, a);
    EXPECT(y.sizes() == ref.sizes());
    EXPECT(rel(y, ref) < 1e-12);
    at::Tensor g = at::randn(ref.sizes(), opts);
    // <g, A x> == <A^T g, x> and == <grad_w, w> - bias part: adjoint identities
    const double lhs = (g * (ref - b.view({1, -1, 1, 1}))).sum().item<double>();
    const double via_input = (conv2d_grad_input_cpu(g, w, x.sizes(), a) * x).sum().item<double>();
    const double via_weight = (conv2d_grad_weight_cpu(g, x, w.sizes(), a) * w).sum().item<double>();
    EXPECT(std::fabs(lhs - via_input) <= 1e-10 * (1 + std::fabs(lhs)));
    EXPECT(std::fabs(lhs - via_weight) <= 1e-10 * (1 + std::fabs(lhs)));
  }
  TEST_MAIN_END();
}
