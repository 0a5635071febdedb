// Entry points of the three registered convolution ops, per device, and the
// argument checks they share. The Python layer (fftconv_ext/functional.py)
// gives users F.conv-style errors first; these checks keep direct calls of
// torch.ops.fftconv.* safe.
#pragma once

#include <tuple>

#include <ATen/ATen.h>

#include <optional>

#include "conv/conv_geometry.h"

namespace fftconv {

struct ConvArgs {
  int64_t stride[2];
  int64_t padding[4];  // top, bottom, left, right
  int64_t dilation[2];
  int64_t groups;
  bool circular;
};

inline ConvArgs parse_conv_args(at::IntArrayRef stride, at::IntArrayRef padding,
                                at::IntArrayRef dilation, int64_t groups, bool circular) {
  TORCH_CHECK(stride.size() == 2, "fftconv: stride must have 2 elements, got ", stride.size());
  TORCH_CHECK(padding.size() == 4, "fftconv: padding must have 4 elements (top, bottom, left, right), got ",
              padding.size());
  TORCH_CHECK(dilation.size() == 2, "fftconv: dilation must have 2 elements, got ", dilation.size());
  TORCH_CHECK(groups > 0, "fftconv: groups must be positive, got ", groups);
  ConvArgs a;
  for (int i = 0; i < 2; ++i) {
    TORCH_CHECK(stride[i] > 0, "fftconv: stride must be positive, got ", stride);
    TORCH_CHECK(dilation[i] > 0, "fftconv: dilation must be positive, got ", dilation);
    a.stride[i] = stride[i];
    a.dilation[i] = dilation[i];
  }
  for (int i = 0; i < 4; ++i) {
    TORCH_CHECK(padding[i] >= 0, "fftconv: padding must be non-negative, got ", padding);
    a.padding[i] = padding[i];
  }
  a.groups = groups;
  a.circular = circular;
  return a;
}

// Checks shared by all three ops; returns the geometry.
inline ConvGeometry2d geometry_from_shapes(at::IntArrayRef input_size, at::IntArrayRef weight_size,
                                   const ConvArgs& a) {
  TORCH_CHECK(input_size.size() == 4, "fftconv: input must be 4-D (N, C, H, W), got ", input_size);
  TORCH_CHECK(weight_size.size() == 4, "fftconv: weight must be 4-D (C_out, C_in/groups, kH, kW), got ",
              weight_size);
  const int64_t c_in = input_size[1], c_out = weight_size[0];
  TORCH_CHECK(c_in % a.groups == 0, "fftconv: groups (", a.groups, ") must divide in_channels (", c_in, ")");
  TORCH_CHECK(c_out % a.groups == 0, "fftconv: groups (", a.groups, ") must divide out_channels (", c_out, ")");
  TORCH_CHECK(weight_size[1] * a.groups == c_in, "fftconv: weight has ", weight_size[1],
              " input channels per group, expected in_channels / groups = ", c_in / a.groups);
  TORCH_CHECK(weight_size[2] > 0 && weight_size[3] > 0, "fftconv: kernel must be non-empty, got ", weight_size);
  ConvGeometry2d p = make_conv_geometry(input_size[0], c_in, input_size[2], input_size[3], c_out, a.groups,
                                weight_size[2], weight_size[3], a.stride, a.padding, a.dilation,
                                a.circular);
  TORCH_CHECK(p.h.out_len > 0 && p.w.out_len > 0,
              "fftconv: kernel (dilated) is larger than the padded input: input ", input_size,
              ", weight ", weight_size);
  if (a.circular) {
    TORCH_CHECK(p.h.dense_len <= p.h.in_len && p.w.dense_len <= p.w.in_len,
                "fftconv: circular padding wider than the kernel reach is not supported by the "
                "native op; pad explicitly");
  }
  return p;
}

// The output gradient must have the forward output's shape.
inline void check_grad_output(const at::Tensor& g, const ConvGeometry2d& p) {
  TORCH_CHECK(g.dim() == 4 && g.size(0) == p.batch && g.size(1) == p.c_out && g.size(2) == p.h.out_len &&
                  g.size(3) == p.w.out_len,
              "fftconv: grad_output has shape ", g.sizes(), ", expected (", p.batch, ", ", p.c_out, ", ",
              p.h.out_len, ", ", p.w.out_len, ")");
}


}  // namespace fftconv
