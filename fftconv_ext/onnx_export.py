"""ONNX export: what a converted model becomes in an ONNX graph.

ONNX has no FFT convolution, and it needs none: its ``Conv`` and ``ConvTranspose``
are the operations fftconv_ext computes, and every ONNX runtime brings its own
kernels for them. So while ``torch.onnx.export`` traces a model (either exporter),
the functional entry points run the standard PyTorch operation instead of the
FFT operator:

* ``conv1d/2d/3d`` and ``conv_transpose1d/2d/3d`` -> ``F.conv*`` with the call's
  stride, padding, dilation, groups and bias (and ``F.pad`` for the reflect,
  replicate and circular padding modes, as ``nn.Conv*d`` exports them), so the
  graph holds the same ``Conv`` / ``ConvTranspose`` nodes as the unconverted
  model's; the 3-D depth fold never reaches the graph;
* ``fourier_mix`` -> ``Re(F_N x F_D)`` as four ``MatMul`` with cosine and sine
  matrices made in the graph (from ``Range``, ``Mod``, ``Cos``, ``Sin``, so any size
  exports, dynamic ones too), and ``long_conv1d`` -> a depthwise ``Conv`` with the
  flipped kernel after a zero (causal) or wrap-around (circular) pad. Both are exact
  equivalents of the FFT: onnxruntime's ``DFT`` loses accuracy at lengths that are
  not powers of two (relative error 2.5e-5 on a (65, 192) plane, against 1.4e-7 for
  ``torch.fft``), so it is not used.

The checks of the arguments run as in eager mode first, so an export raises the
same ``ConvArgumentError`` as a call. The graphs hold no ``fftconv`` operator:
an ONNX runtime needs nothing of fftconv_ext (and gets none of its speed).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def exporting_to_onnx() -> bool:
    """True while ``torch.onnx.export`` traces (the TorchScript-based or the dynamo exporter)."""
    return torch.onnx.is_in_onnx_export()


def _cos_sin(n: int, dtype, device):
    """cos and sin of 2 pi j k / n, (n, n), and n as a 1-element tensor; j k is reduced mod n
    first, so the angles are exact. n is kept a tensor: the ONNX exporter has no remainder by a
    symbolic size, and math on it would fix a dynamic size to the example's."""
    j = torch.arange(n, device=device)
    n_t = (j[-1:] + 1).to(dtype)
    angle = torch.remainder(j[:, None] * j[None, :], j[-1:] + 1).to(dtype) * (2 * math.pi / n_t)
    return torch.cos(angle), torch.sin(angle), n_t


def fourier_mix_matmul(x: torch.Tensor, norm: str) -> torch.Tensor:
    """``Re(FFT2(x))`` over the last two dimensions as ``C_N x C_D - S_N x S_D``."""
    out_dtype = x.dtype
    if out_dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    c_n, s_n, n = _cos_sin(x.shape[-2], x.dtype, x.device)
    c_d, s_d, d = _cos_sin(x.shape[-1], x.dtype, x.device)
    y = torch.matmul(torch.matmul(c_n, x), c_d) - torch.matmul(torch.matmul(s_n, x), s_d)
    if norm == "ortho":
        y = y * torch.rsqrt(n * d)
    elif norm == "forward":
        y = y / (n * d)
    return y.to(out_dtype)


def long_conv1d_direct(u: torch.Tensor, k: torch.Tensor, D, causal: bool) -> torch.Tensor:
    """``long_conv1d`` as a depthwise ``F.conv1d``: linear (causal) or circular over ``L``."""
    out_dtype = u.dtype
    if out_dtype in (torch.float16, torch.bfloat16):
        u, k = u.float(), k.float()
        D = None if D is None else D.float()
    taps = k.shape[-1]
    if causal:
        x = F.pad(u, (taps - 1, 0))
    else:  # y[t] = sum_s k[s] u[(t - s) mod L]: the last taps - 1 samples wrap around to the front
        x = torch.cat([u[..., u.shape[-1] - (taps - 1):], u], dim=-1)
    y = F.conv1d(x, k.flip(-1).unsqueeze(1), groups=u.shape[1])
    if D is not None:
        y = y + D.unsqueeze(-1) * u
    return y.to(out_dtype)
