"""FourierMix: the parameter-free token mixer of FNet / FiT."""
from __future__ import annotations

import torch
from torch import nn

from ..fourier_mix import fourier_mix
from .scripting import NotScriptable


class FourierMix(NotScriptable, nn.Module):
    """``y = Re(FFT2(x))`` over the last two dimensions ``(tokens, hidden)``.

    No parameters; see :func:`fftconv_ext.fourier_mix`.
    """

    def __init__(self, norm: str = "backward"):
        super().__init__()
        if norm not in ("backward", "ortho", "forward"):
            raise ValueError(f"FourierMix: norm must be 'backward', 'ortho' or 'forward', got {norm!r}")
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fourier_mix(x, self.norm)

    def extra_repr(self) -> str:
        return f"norm={self.norm!r}"
