"""Structured global convolution (Li et al., "What Makes Convolutional Models
Great on Long Sequence Modeling?", ICLR 2023): a kernel as long as the
sequence, built from small sub-kernels, applied with long_conv1d (1-D) or
the fused 2-D operator (LongConv2d)."""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import functional as FX
from ..long_conv import long_conv1d
from .scripting import NotScriptable


class SGConv1d(NotScriptable, nn.Module):
    """SGConv on (B, H, L).

    The kernel concatenates ``num_scales`` sub-kernels of ``kernel_dim`` taps;
    scale i is upsampled by 2^max(0, i-1) with linear interpolation and weighted
    by ``decay``^i, so the kernel covers kernel_dim * 2^(num_scales-1) positions
    (truncated to L). It is divided by its norm at the first forward (then kept
    as a buffer). ``bidirectional`` adds a second kernel run over the reversed
    sequence.
    """

    def __init__(self, channels: int, l_max: int, kernel_dim: int = 64, num_scales: Optional[int] = None,
                 decay: float = 0.5, bidirectional: bool = False):
        super().__init__()
        if num_scales is None:
            num_scales = 1 + max(0, math.ceil(math.log2(max(l_max, 1) / kernel_dim)))
        self.kernel_dim, self.num_scales, self.decay = kernel_dim, num_scales, decay
        self.bidirectional = bidirectional
        rows = channels * (2 if bidirectional else 1)
        self.sub_kernels = nn.ParameterList(
            [nn.Parameter(torch.randn(rows, kernel_dim)) for _ in range(num_scales)])
        self.D = nn.Parameter(torch.randn(channels))
        self.register_buffer("kernel_norm", torch.zeros(()), persistent=True)

    def raw_kernel(self) -> torch.Tensor:
        """The concatenated, decayed kernel before normalisation, (rows, total length)."""
        parts = []
        for i, sub in enumerate(self.sub_kernels):
            factor = 2 ** max(0, i - 1)
            k = sub if factor == 1 else F.interpolate(sub.unsqueeze(0), scale_factor=factor, mode="linear",
                                                      align_corners=False).squeeze(0)
            parts.append(k * self.decay ** i)
        return torch.cat(parts, dim=-1)

    def kernel(self, length: int) -> torch.Tensor:
        k = self.raw_kernel()
        with torch.no_grad():  # the first forward fixes the normalisation (no .item(): compile- and meta-safe)
            self.kernel_norm.copy_(torch.where(self.kernel_norm == 0, k.detach().norm(), self.kernel_norm))
        k = k / self.kernel_norm
        return k[:, :length] if k.shape[-1] >= length else F.pad(k, (0, length - k.shape[-1]))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        L = u.shape[-1]
        k = self.kernel(L).to(u.dtype)
        D = self.D.to(u.dtype)
        if not self.bidirectional:
            return long_conv1d(u, k, D)
        h = u.shape[1]
        fwd = long_conv1d(u, k[:h], D)
        bwd = long_conv1d(u.flip(-1), k[h:]).flip(-1)
        return fwd + bwd


class LongConv2d(NotScriptable, nn.Module):
    """A depthwise kernel as large as the feature map, from small learned kernels.

    Per channel, scale i holds a ``kernel_dim x kernel_dim`` kernel, bilinearly
    upsampled to ``(kernel_dim-1) * 2^i + 1`` taps (scale i covers 2^i times the
    base) and weighted by ``decay``^i; the scales are summed, centred, into one
    kernel that reaches across the whole feature map. Applied as a 'same'
    depthwise correlation by the FFT operator; a drop-in for ConvNeXt's 7x7
    depthwise convolution at any feature-map size. In eval mode the materialised
    kernel is reused while the parameters are unchanged (and the operator caches
    its spectrum).

    Args:
        channels: C.
        kernel_dim: taps of each learned kernel (odd).
        num_scales: scales; default: enough to cover the feature map at each call.
        decay: weight ratio between consecutive scales.
        max_scales: cap on the default number of scales.
    """

    def __init__(self, channels: int, kernel_dim: int = 7, num_scales: Optional[int] = None,
                 decay: float = 0.5, max_scales: int = 6, bias: bool = True):
        super().__init__()
        if kernel_dim < 3 or kernel_dim % 2 == 0:
            raise ValueError(f"LongConv2d: kernel_dim must be odd and >= 3, got {kernel_dim}")
        self.channels, self.kernel_dim, self.decay = channels, kernel_dim, decay
        self.num_scales = num_scales
        n = num_scales or max_scales
        self.scales = nn.ParameterList(
            [nn.Parameter(torch.randn(channels, kernel_dim, kernel_dim) / kernel_dim) for _ in range(n)])
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        self._memo: Dict[Tuple, Tuple[torch.Tensor, list]] = {}

    def scale_size(self, i: int) -> int:
        return (self.kernel_dim - 1) * 2 ** i + 1

    def scales_for(self, height: int, width: int) -> int:
        if self.num_scales is not None:
            return self.num_scales
        need = max(height, width)
        n = 1
        while self.scale_size(n - 1) < need and n < len(self.scales):
            n += 1
        return n

    def materialize(self, height: int, width: int) -> torch.Tensor:
        """The (C, 1, K, K) kernel used at a height x width feature map."""
        n = self.scales_for(height, width)
        K = self.scale_size(n - 1)
        total = None
        for i in range(n):
            s = self.scale_size(i)
            k = self.scales[i]
            if s != self.kernel_dim:
                k = F.interpolate(k.unsqueeze(0), size=(s, s), mode="bilinear", align_corners=True).squeeze(0)
            p = (K - s) // 2
            k = F.pad(k, (p, p, p, p)) * self.decay ** i
            total = k if total is None else total + k
        return total.unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.training or torch.is_grad_enabled():
            self._memo.clear()
            kernel = self.materialize(h, w)
        else:
            # reused while the scales it was made from hold the same values: compared by value (small
            # next to the convolution), so edits through .data, load_state_dict, optimizer steps and
            # .to() can never leave it stale
            used = list(self.scales)[:self.scales_for(h, w)]
            key = (h, w, x.device, x.dtype)
            entry = self._memo.get(key)
            if entry is not None and all(a.device == b.device and torch.equal(a, b) for a, b in zip(entry[1], used)):
                kernel = entry[0]
            else:
                kernel = self.materialize(h, w).to(x.dtype)
                self._memo = {key: (kernel, [p.detach().clone() for p in used])}
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return FX.conv2d(x, kernel.to(x.dtype), bias, padding="same", groups=self.channels, algo="fft")
