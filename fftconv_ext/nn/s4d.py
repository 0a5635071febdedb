"""S4D: a diagonal state-space model whose convolution kernel is as long as
the sequence (Gu et al., "On the Parameterization and Initialization of
Diagonal State Space Models", 2022), applied with long_conv1d."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ..long_conv import long_conv1d
from .scripting import NotScriptable


class S4DKernel(nn.Module):
    """Kernel of a diagonal SSM x' = A x + B u, y = C x, discretised by zero-order hold.

    K[l] = 2 Re( sum_n C_n * Bbar_n * exp(dt A_n l) ),  Bbar = (exp(dt A) - 1) / A * B,
    with N/2 complex modes (their conjugates give the factor 2).

    Args:
        channels: H, one kernel per channel.
        state: N (N/2 complex modes).
        init: ``"lin"`` (A_n = -1/2 + i pi n) or ``"inv"`` (A_n = -1/2 + i N/pi (N/(2n+1) - 1)).
        dt_min, dt_max: range of the learned step (log-uniform).
        chunk: positions per block of the Vandermonde product (memory ~ H * N/2 * chunk).
    """

    def __init__(self, channels: int, state: int = 64, init: str = "lin", dt_min: float = 1e-3,
                 dt_max: float = 1e-1, chunk: int = 4096):
        super().__init__()
        if init not in ("lin", "inv"):
            raise ValueError(f"S4DKernel: init must be 'lin' or 'inv', got {init!r}")
        if state < 2 or state % 2:
            raise ValueError(f"S4DKernel: state must be an even number >= 2, got {state}")
        h, n = channels, state // 2
        self.chunk = chunk
        log_dt = torch.rand(h) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        idx = torch.arange(n, dtype=torch.float32)
        imag = math.pi * idx if init == "lin" else state / math.pi * (state / (2 * idx + 1) - 1)
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(h, n)))
        self.A_imag = nn.Parameter(imag.repeat(h, 1))
        self.B = nn.Parameter(torch.view_as_real(torch.ones(h, n, dtype=torch.complex64)))
        self.C = nn.Parameter(torch.view_as_real(torch.randn(h, n, dtype=torch.complex64) * 0.5 ** 0.5))

    def discrete(self):
        """(dtA, C * Bbar): the discretised system, complex (H, N/2)."""
        dt = self.log_dt.exp().unsqueeze(-1)
        A = torch.complex(-self.log_A_real.exp(), self.A_imag)
        dtA = A * dt
        Bbar = (dtA.exp() - 1) / A * torch.view_as_complex(self.B)
        return dtA, torch.view_as_complex(self.C) * Bbar

    def forward(self, length: int) -> torch.Tensor:
        """The (H, length) real kernel, computed in chunks of positions."""
        dtA, cb = self.discrete()
        parts = []
        for l0 in range(0, length, self.chunk):
            pos = torch.arange(l0, min(l0 + self.chunk, length), device=dtA.device, dtype=dtA.real.dtype)
            vander = torch.exp(dtA.unsqueeze(-1) * pos)  # (H, N/2, chunk)
            parts.append(2 * torch.einsum("hn,hnl->hl", cb, vander).real)
        return torch.cat(parts, dim=-1)


class S4DConv(NotScriptable, nn.Module):
    """An S4D layer on (B, H, L): kernel, long_conv1d with a D skip, activation, output projection."""

    def __init__(self, channels: int, state: int = 64, init: str = "lin", dropout: float = 0.0,
                 activation: Optional[nn.Module] = None, **kernel_args):
        super().__init__()
        self.kernel = S4DKernel(channels, state, init, **kernel_args)
        self.D = nn.Parameter(torch.randn(channels))
        self.activation = activation if activation is not None else nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Conv1d(channels, channels, 1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        k = self.kernel(u.shape[-1]).to(u.dtype)
        y = long_conv1d(u, k, self.D.to(u.dtype), causal=True)
        return self.output(self.dropout(self.activation(y)))
