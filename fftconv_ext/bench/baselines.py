"""Baselines the operator is measured against.

naive_fft_conv2d: the composition the popular pure-PyTorch FFT-convolution
packages use (pad the input, pad the kernel to the padded input, rfft2 both,
multiply by the conjugate, irfft2, crop): textbook lengths, everything
materialised, the kernel spectrum recomputed per call.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def naive_fft_conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, padding: int,
                     groups: int) -> torch.Tensor:
    """Depthwise or grouped cross-correlation, stride 1, symmetric zero padding."""
    xp = F.pad(x, (padding, padding, padding, padding))
    hp, wp = xp.shape[-2:]
    kh, kw = w.shape[-2:]
    X = torch.fft.rfft2(xp)
    Wf = torch.fft.rfft2(w, s=(hp, wp))
    n, c = x.shape[:2]
    o, cpg = w.shape[:2]
    X = X.view(n, groups, c // groups, hp, -1)
    Wf = Wf.view(groups, o // groups, cpg, hp, -1)
    Y = (X.unsqueeze(2) * Wf.conj().unsqueeze(0)).sum(3)  # (n, groups, opg, hp, wf)
    y = torch.fft.irfft2(Y.reshape(n, o, hp, -1), s=(hp, wp))
    y = y[..., : hp - kh + 1, : wp - kw + 1]
    if b is not None:
        y = y + b.view(1, -1, 1, 1)
    return y
