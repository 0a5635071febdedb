"""FiT against ViT: ``python -m fftconv_ext.bench --fit``.

Two parts:
  * fourier_mix alone against ``torch.fft.fft2(x).real``, forward and
    forward+backward, interleaved rounds in this process;
  * FiT-Base against ViT-Base inference latency (batch 1 and 8), parameters
    and peak memory at (32, patch 4), (224, patch 4), (1080, patch 16). Each
    measurement runs in its own process (python -m fftconv_ext.bench.fit_worker)
    so that peak memory is its own and an out-of-memory or a time-out is
    recorded as such instead of ending the run.
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Dict, List, Optional

import torch

import fftconv_ext
from .timing import time_interleaved

FIT_SETTINGS = ((32, 4), (224, 4), (1080, 16))
MIX_SHAPES = ((8, 197, 768), (8, 3137, 768))


def run_fourier_mix(device: torch.device, shapes=MIX_SHAPES, budget: float = 4.0) -> List[Dict]:
    rows = []
    g = torch.Generator().manual_seed(0)
    for shape in shapes:
        x = torch.randn(*shape, generator=g).to(device)
        with torch.no_grad():
            ref = torch.fft.fft2(x.double()).real
            err = ((fftconv_ext.fourier_mix(x).double() - ref).abs().max() / ref.abs().max()).item()
            fwd = time_interleaved({"fourier_mix": lambda: fftconv_ext.fourier_mix(x),
                                    "torch.fft.fft2(x).real": lambda: torch.fft.fft2(x).real},
                                   device, warmup=1, rounds=15, max_seconds=budget)
        xg = x.clone().requires_grad_()
        grad = torch.randn(*shape, generator=g).to(device)

        def step(f):
            def run():
                xg.grad = None
                f(xg).backward(grad)
            return run
        bwd = time_interleaved({"fourier_mix": step(fftconv_ext.fourier_mix),
                                "torch.fft.fft2(x).real": step(lambda t: torch.fft.fft2(t).real)},
                               device, warmup=1, rounds=15, max_seconds=budget)
        rows.append({"shape": list(shape), "max_rel_err": err, "forward": fwd, "forward_backward": bwd})
    return rows


def run_worker(model: str, img: int, patch: int, batch: int, depth: int, device: torch.device, threads: int,
               timeout: float) -> Dict:
    cmd = [sys.executable, "-m", "fftconv_ext.bench.fit_worker", "--model", model, "--img", str(img),
           "--patch", str(patch), "--batch", str(batch), "--depth", str(depth), "--device", str(device),
           "--threads", str(threads)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout (> {timeout:.0f} s)"}
    if r.returncode != 0:
        tail = (r.stderr or "").strip().splitlines()[-1:] or [""]
        oom = "out of memory" in r.stderr.lower() or r.returncode in (-9, 137)
        return {"status": "out of memory" if oom else f"failed: {tail[0][:200]}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_models(device: torch.device, depth: int, threads: int, batches=(1, 8), settings=FIT_SETTINGS,
               timeout: float = 300.0, progress=None) -> List[Dict]:
    rows = []
    for img, patch in settings:
        for batch in batches:
            row = {"img": img, "patch": patch, "batch": batch, "tokens": 1 + (img // patch) ** 2}
            for model in ("fit_base", "vit_base"):
                row[model] = run_worker(model, img, patch, batch, depth, device, threads, timeout)
                if progress:
                    progress(f"{model} {img}/{patch} batch {batch}: {row[model].get('median_ms', row[model].get('status'))}")
            rows.append(row)
    return rows


def _ms(entry: Dict) -> Optional[float]:
    return entry.get("median_ms") if entry.get("status") == "ok" else None


def fit_markdown(mix_rows: List[Dict], model_rows: List[Dict], depth: int) -> str:
    lines = ["### fourier_mix alone (float32, median ms)", "",
             "| shape | fourier_mix fwd | fft2(x).real fwd | speedup | fourier_mix fwd+bwd | fft2(x).real fwd+bwd "
             "| speedup | max rel err |", "|" + "---|" * 8]
    for r in mix_rows:
        f, b = r["forward"], r["forward_backward"]
        fa, fr = f["fourier_mix"]["median_ms"], f["torch.fft.fft2(x).real"]["median_ms"]
        ba, br = b["fourier_mix"]["median_ms"], b["torch.fft.fft2(x).real"]["median_ms"]
        lines.append(f"| {tuple(r['shape'])} | {fa:.2f} | {fr:.2f} | {fr / fa:.2f}x | {ba:.2f} | {br:.2f} | "
                     f"{br / ba:.2f}x | {r['max_rel_err']:.1e} |")
    lines += ["", f"### FiT-Base vs ViT-Base inference (depth {depth} of 12, float32)", "",
              "| image / patch | tokens | batch | FiT ms | ViT ms | ViT / FiT | FiT peak MiB | ViT peak MiB | "
              "FiT params | ViT params |", "|" + "---|" * 10]

    def cell(e, key, fmt):
        return fmt.format(e[key]) if e.get("status") == "ok" else e.get("status", "?")
    for r in model_rows:
        a, v = r["fit_base"], r["vit_base"]
        ratio = f"{_ms(v) / _ms(a):.2f}x" if _ms(a) and _ms(v) else "-"
        lines.append(f"| {r['img']} / {r['patch']} | {r['tokens']} | {r['batch']} | {cell(a, 'median_ms', '{:.1f}')} | "
                     f"{cell(v, 'median_ms', '{:.1f}')} | {ratio} | {cell(a, 'peak_mib', '{:.0f}')} | "
                     f"{cell(v, 'peak_mib', '{:.0f}')} | {cell(a, 'params', '{:,}')} | {cell(v, 'params', '{:,}')} |")
    return "\n".join(lines)


def default_depth(device: torch.device) -> int:
    return 12 if device.type == "cuda" else 2


__all__ = ["run_fourier_mix", "run_models", "fit_markdown", "default_depth"]
