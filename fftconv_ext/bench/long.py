"""Long convolutions: long_conv1d against the torch.fft composition the S4/SGConv
codebases use, and LongConv2d against F.conv2d with the same kernel."""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F

import fftconv_ext
from ..nn import LongConv2d
from .report import geomean
from .timing import time_interleaved


def fft_composition(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """rfft with n = 2L, multiply, irfft, crop, + D*u (the S4 reference code's recipe)."""
    L = u.shape[-1]
    y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(k, n=2 * L), n=2 * L)[..., :L]
    return y + D.unsqueeze(-1) * u


def run_long(device: torch.device, lengths=(1024, 8192, 65536), batch: int = 4, channels: int = 256,
             budget: float = 1.5) -> Dict:
    rows: List[Dict] = []
    g = torch.Generator().manual_seed(0)
    for L in lengths:
        u = torch.randn(batch, channels, L, generator=g).to(device)
        k = (torch.randn(channels, L, generator=g) / L ** 0.5).to(device)
        D = torch.randn(channels, generator=g).to(device)
        ref = fft_composition(u.double(), k.double(), D.double())
        fwd = {"long_conv1d": lambda: fftconv_ext.long_conv1d(u, k, D),
               "torch.fft composition": lambda: fft_composition(u, k, D)}
        row = {"L": L, "shape": [batch, channels, L], "forward": {}, "backward": {}}
        with torch.no_grad():
            for name, fn in fwd.items():
                row["forward"][name] = {"rel_err": ((fn().double() - ref).norm() / ref.norm()).item()}
            for name, t in time_interleaved(fwd, device, warmup=1, rounds=30, max_seconds=budget).items():
                row["forward"][name].update(t)
        ug, kg, Dg = (t.detach().clone().requires_grad_() for t in (u, k, D))
        grad = torch.randn(u.shape, generator=g).to(device)

        def step(f):
            def run():
                ug.grad = kg.grad = Dg.grad = None
                f(ug, kg, Dg).backward(grad)
            return run
        bwd = {"long_conv1d": step(fftconv_ext.long_conv1d), "torch.fft composition": step(fft_composition)}
        row["backward"] = time_interleaved(bwd, device, warmup=1, rounds=20, max_seconds=budget)
        rows.append(row)
    summ = {}
    for kind in ("forward", "backward"):
        summ[f"long_conv1d {kind}: geomean speedup vs torch.fft composition"] = geomean(
            [r[kind]["torch.fft composition"]["median_ms"] / r[kind]["long_conv1d"]["median_ms"] for r in rows])
    # LongConv2d against F.conv2d with its materialised kernel
    conv_rows = []
    for n, c, r in ((4, 96, 56), (4, 192, 28), (4, 384, 14)):
        layer = LongConv2d(c).to(device).eval()
        x = torch.randn(n, c, r, r, generator=g).to(device)
        with torch.no_grad():
            kernel = layer.materialize(r, r)
            fns = {"LongConv2d": lambda: layer(x),
                   "F.conv2d (same kernel)": lambda: F.conv2d(x, kernel, layer.bias, padding="same", groups=c)}
            times = time_interleaved(fns, device, warmup=1, rounds=10, max_seconds=budget)
        conv_rows.append({"shape": [n, c, r, r], "kernel": kernel.shape[-1], **times})
    return {"rows": rows, "conv2d_rows": conv_rows, "summary": summ}


def long_markdown(res: Dict) -> str:
    lines = ["| (B, C, L) | long_conv1d fwd ms | torch.fft fwd ms | speedup | long_conv1d fwd+bwd ms | "
             "torch.fft fwd+bwd ms | speedup | rel err |", "|" + "---|" * 8]
    for r in res["rows"]:
        f, b = r["forward"], r["backward"]
        lines.append(f"| {tuple(r['shape'])} | {f['long_conv1d']['median_ms']:.2f} | "
                     f"{f['torch.fft composition']['median_ms']:.2f} | "
                     f"{f['torch.fft composition']['median_ms'] / f['long_conv1d']['median_ms']:.2f}x | "
                     f"{b['long_conv1d']['median_ms']:.2f} | {b['torch.fft composition']['median_ms']:.2f} | "
                     f"{b['torch.fft composition']['median_ms'] / b['long_conv1d']['median_ms']:.2f}x | "
                     f"{f['long_conv1d']['rel_err']:.1e} |")
    lines += ["", "| LongConv2d input | kernel | LongConv2d ms | F.conv2d (same kernel) ms | speedup |", "|---|---|---|---|---|"]
    for r in res["conv2d_rows"]:
        a, d = r["LongConv2d"]["median_ms"], r["F.conv2d (same kernel)"]["median_ms"]
        lines.append(f"| {tuple(r['shape'])} | {r['kernel']}x{r['kernel']} | {a:.2f} | {d:.2f} | {d / a:.1f}x |")
    lines += [""] + [f"- {k}: {v:.2f}x" for k, v in res["summary"].items()]
    return "\n".join(lines)
