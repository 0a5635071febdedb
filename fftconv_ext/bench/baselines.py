"""Baselines the operator is measured against.

naive_fft_conv2d: the composition the popular pure-PyTorch FFT-convolution
packages use (pad the input, pad the kernel to the padded input, rfft2 both,
multiply by the conjugate, irfft2, crop): textbook lengths, everything
materialised, the kernel spectrum recomputed per call.
"""
from __future__ import annotations

import math

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


def _next_fast(n: int) -> int:
    def smooth(m: int) -> bool:
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        return m == 1
    while not smooth(n):
        n += 1
    return n


class BestFFTComposition:
    """The best pure-torch.fft depthwise correlation we know how to write
    (docs/design.md §1-§5), the bar the compiled operator has to clear:

    1. smallest alias-free length next_fast(H + pad) per axis, not H + k - 1;
    2. (taps never reaching the input only matter when k > H + pad; not needed at these shapes);
    3. shift, conjugation and 1/N baked into the kernel spectrum: no roll, a plain crop;
    4. rfft along W on the H data rows only, fft along H with implicit zero rows, only kept
       rows transformed back;
    5. kernel spectrum cached per weight version.

    Planes go through all stages in chunks of `chunk` planes: 32 on CPU (cache
    blocking); on CUDA as many as 256 MiB of spectra hold, since there every chunk
    costs kernel launches and the GPU needs whole batches to fill. ``two_d=True``
    replaces docs/design.md §4 by one 2-D rfft2/irfft2 pair over the padded planes (cuFFT's
    fused 2-D plans can beat the skipped rows on a GPU); the benchmark times both on
    CUDA and holds us to the faster.
    Stride 1, symmetric zero padding, depthwise (groups == channels == out_channels).
    """

    def __init__(self, chunk: int | None = None, two_d: bool = False):
        self.chunk = chunk
        self.two_d = two_d
        self._cache = {}

    def _chunk(self, x: torch.Tensor, nh: int, nw: int) -> int:
        if self.chunk is not None:
            return self.chunk
        if x.device.type != "cuda":
            return 32
        plane_bytes = nh * (nw // 2 + 1) * 2 * x.element_size()
        return max(1, (256 << 20) // plane_bytes)

    def spectrum(self, w: torch.Tensor, nh: int, nw: int, pad: int) -> torch.Tensor:
        training = torch.is_grad_enabled() and w.requires_grad  # a fresh graph every step
        key = (id(w), w._version, nh, nw, pad, w.dtype, w.device)
        spec = None if training else self._cache.get(key)
        if spec is None:
            c, _, kh, kw = w.shape
            placed = torch.zeros(c, nh, nw, dtype=w.dtype, device=w.device)
            placed[:, :kh, :kw] = w[:, 0]
            placed = torch.roll(placed, shifts=(-pad, -pad), dims=(1, 2))  # tap j at (j - pad) mod N
            spec = torch.fft.rfft2(placed).conj() / (nh * nw)
            if not training:
                self._cache = {key: spec}
        return spec

    def __call__(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, padding: int) -> torch.Tensor:
        n, c, h, wd = x.shape
        k = w.shape[-1]
        ho, wo = h + 2 * padding - k + 1, wd + 2 * padding - k + 1
        nh, nw = _next_fast(max(h + padding, ho)), _next_fast(max(wd + padding, wo))
        spec = self.spectrum(w, nh, nw, padding)  # (c, nh, nw//2+1)
        planes = x.reshape(n * c, h, wd)
        out = torch.empty(n * c, ho, wo, dtype=x.dtype, device=x.device)
        chunk = self._chunk(x, nh, nw)
        if chunk >= n * c and not self.two_d:  # whole batch: broadcast the spectrum, no gather
            X = torch.fft.fft(torch.fft.rfft(x, n=nw, dim=-1), n=nh, dim=-2)
            Y = torch.fft.ifft(X * spec, dim=-2, norm="forward")[..., :ho, :]
            out = torch.fft.irfft(Y, n=nw, dim=-1, norm="forward")[..., :wo]
            return out + b.view(1, -1, 1, 1) if b is not None else out
        for p0 in range(0, n * c, chunk):
            p1 = min(p0 + chunk, n * c)
            ch = torch.arange(p0, p1, device=x.device) % c
            if self.two_d:
                X = torch.fft.rfft2(planes[p0:p1], s=(nh, nw))
                out[p0:p1] = torch.fft.irfft2(X * spec[ch], s=(nh, nw), norm="forward")[:, :ho, :wo]
                continue
            X = torch.fft.rfft(planes[p0:p1], n=nw, dim=-1)       # H rows only
            X = torch.fft.fft(X, n=nh, dim=-2)                      # zero rows implicit
            Y = torch.fft.ifft(X * spec[ch], dim=-2, norm="forward")[:, :ho]
            out[p0:p1] = torch.fft.irfft(Y, n=nw, dim=-1, norm="forward")[..., :wo]
        y = out.view(n, c, ho, wo)
        if b is not None:
            y = y + b.view(1, -1, 1, 1)
        return y


class BestFFTComposition3d:
    """BestFFTComposition's rules in three dimensions, the bar for conv3d: alias-free lengths
    next_fast(n + pad) per axis, the shift, conjugation and 1/N baked into a cached kernel
    spectrum, rfft along W on the data only, fft along H and D with implicit zero padding,
    only the kept rows and slices transformed back, volumes in chunks.
    Stride 1, symmetric zero padding, depthwise (groups == channels == out_channels)."""

    def __init__(self, chunk: int = 8):
        self.chunk = chunk
        self._cache = {}

    def spectrum(self, w: torch.Tensor, shape, pad: int) -> torch.Tensor:
        training = torch.is_grad_enabled() and w.requires_grad
        key = (id(w), w._version, shape, pad, w.dtype, w.device)
        spec = None if training else self._cache.get(key)
        if spec is None:
            c, _, kd, kh, kw = w.shape
            placed = torch.zeros((c,) + tuple(shape), dtype=w.dtype, device=w.device)
            placed[:, :kd, :kh, :kw] = w[:, 0]
            placed = torch.roll(placed, shifts=(-pad, -pad, -pad), dims=(1, 2, 3))
            spec = torch.fft.rfftn(placed, dim=(1, 2, 3)).conj() / math.prod(shape)
            if not training:
                self._cache = {key: spec}
        return spec

    def __call__(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, padding: int) -> torch.Tensor:
        n, c = x.shape[:2]
        k = w.shape[-1]
        outs = tuple(s + 2 * padding - k + 1 for s in x.shape[2:])
        shape = tuple(_next_fast(max(s + padding, o)) for s, o in zip(x.shape[2:], outs))
        nd, nh, nw = shape
        spec = self.spectrum(w, shape, padding)
        vols = x.reshape(n * c, *x.shape[2:])
        out = torch.empty(n * c, *outs, dtype=x.dtype, device=x.device)
        for v0 in range(0, n * c, self.chunk):
            v1 = min(v0 + self.chunk, n * c)
            ch = torch.arange(v0, v1, device=x.device) % c
            X = torch.fft.rfft(vols[v0:v1], n=nw, dim=-1)
            X = torch.fft.fft(X, n=nh, dim=-2)
            X = torch.fft.fft(X, n=nd, dim=-3)
            Y = torch.fft.ifft(X * spec[ch], dim=-3, norm="forward")[:, :outs[0]]
            Y = torch.fft.ifft(Y, dim=-2, norm="forward")[:, :, :outs[1]]
            out[v0:v1] = torch.fft.irfft(Y, n=nw, dim=-1, norm="forward")[..., :outs[2]]
        y = out.view(n, c, *outs)
        return y + b.view(1, -1, 1, 1, 1) if b is not None else y
