"""``python -m fftconv_ext.bench --train``: a training step (forward, backward, optimizer
step) with ``algo="auto"`` against ``algo="fft"`` and ``algo="direct"``, per sweep layer and
for whole converted networks, and whether auto makes the same choices in fresh processes.

auto's target: its step within 10 % of the faster of the two paths. Its first step (the
one that measures) is reported against a plain step of the faster path.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict, List

import torch
from torch import nn

import fftconv_ext
from fftconv_ext import candidate_timing

from .timing import time_interleaved

ALGOS = ("auto", "fft", "direct")


def _layer(channels: int, k: int, algo: str, device) -> nn.Module:
    return fftconv_ext.nn.FFTConv2d(channels, channels, k, padding=k // 2, groups=channels, algo=algo).to(device)


def _step_fn(model: nn.Module, x: torch.Tensor, device):
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        xr = x.detach().requires_grad_()  # an inner layer: its input gradient is needed too
        model(xr).float().square().mean().backward()
        opt.step()
    return step


def _compare(name: str, make, x: torch.Tensor, device, max_seconds: float) -> Dict:
    models = {a: make(a) for a in ALGOS}
    state = models["fft"].state_dict()
    for m in models.values():
        m.load_state_dict(state)
    steps = {a: _step_fn(models[a], x, device) for a in ALGOS}
    first = candidate_timing.time_once(steps["auto"], device)  # auto's first step: its choices are made there
    # lockstep rounds until one path has used max_seconds: a layer with 2 ms steps gets a
    # hundred rounds (15 had left its auto, the direct path itself, 13 % "slower" by medians)
    t = time_interleaved(steps, device, warmup=1, rounds=100, max_seconds=max_seconds,
                         paired=[("auto", "fft"), ("auto", "direct")], lockstep=True)
    med = {a: t[a]["median_ms"] for a in ALGOS}
    best = min(med["fft"], med["direct"])
    faster = "fft" if med["fft"] <= med["direct"] else "direct"
    return {"layer": name, "input": list(x.shape), "median_ms": med, "auto_over_best": med["auto"] / best,
            "auto_paired_over_best": t["auto"]["paired_ratio_vs"][faster],
            "first_auto_step_ms": first * 1e3, "first_step_over_best": first * 1e3 / best}


def sweep_layers(full: bool = False):
    from .sweep import SWEEP_K_DEFAULT, SWEEP_K_FULL, SWEEP_R
    return [(R, k) for R in SWEEP_R for k in (SWEEP_K_FULL if full else SWEEP_K_DEFAULT)]


def run_train(device: torch.device, batch: int, full: bool = False, model_batch: int = 2,
              model_resolution: int = 64) -> List[Dict]:
    rows = []
    for R, k in sweep_layers(full):
        x = torch.randn(batch, 384, R, R, device=device)
        rows.append(_compare(f"sweep R{R} k{k}", lambda a: _layer(384, k, a, device), x, device, 1.0))
        print(f"  train step {rows[-1]['layer']}: auto/best {rows[-1]['auto_over_best']:.3f}", flush=True)
    from ..models import convnext_tiny, replknet_31b
    for name, build in (("RepLKNet-31B", replknet_31b), ("ConvNeXt-T", convnext_tiny)):
        torch.manual_seed(0)
        base = build(num_classes=10).to(device)
        x = torch.randn(model_batch, 3, model_resolution, model_resolution, device=device)

        def make(a, base=base):
            import copy
            return fftconv_ext.convert(copy.deepcopy(base), algo=a)
        rows.append(_compare(f"{name} @{model_resolution}", make, x, device, 4.0))
        print(f"  train step {rows[-1]['layer']}: auto/best {rows[-1]['auto_over_best']:.3f}", flush=True)
    return rows


_CHOICES = """
import json, torch, fftconv_ext
from fftconv_ext import algo
torch.set_num_threads({threads})
out = {{}}
for R, k in {layers}:
    x = torch.randn({batch}, 384, R, R, requires_grad=True)
    m = fftconv_ext.nn.FFTConv2d(384, 384, k, padding=k // 2, groups=384)
    m(x).square().mean().backward()
    made = {{d: c for p, d, c in algo.choices() if p.x_shape == ({batch}, 384, R, R) and p.w_shape == (384, 1, k, k)}}
    out["R%d k%d" % (R, k)] = {{d: made[d][0] if d in made else None for d in ("forward", "grad_input", "grad_weight")}}
print(json.dumps(out))
"""


def run_stability(batch: int, threads: int, processes: int = 5, full: bool = False) -> Dict:
    """auto's choices per sweep layer (forward, input gradient, weight gradient) in fresh
    processes: {layer: [choices of each process]}."""
    code = _CHOICES.format(threads=threads, layers=sweep_layers(full), batch=batch)
    runs = []
    for _ in range(processes):
        env = {k: v for k, v in os.environ.items() if not k.startswith("FFTCONV_")}  # the defaults
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"stability run failed: {r.stderr[-2000:]}")
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    layers = runs[0].keys()
    return {layer: [run[layer] for run in runs] for layer in layers}


def train_markdown(rows: List[Dict], stability: Dict) -> str:
    lines = ["| layer | input | auto ms | fft ms | direct ms | auto / faster | paired | first auto step / faster step |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["median_ms"]
        lines.append(f"| {r['layer']} | {'x'.join(map(str, r['input']))} | {m['auto']:.2f} | {m['fft']:.2f} | "
                     f"{m['direct']:.2f} | {r['auto_over_best']:.3f} | {r['auto_paired_over_best']:.3f} | "
                     f"{r['first_step_over_best']:.1f}x |")
    worst = max(r["auto_over_best"] for r in rows)
    worst_paired = max(r["auto_paired_over_best"] for r in rows)
    lines += ["", f"- worst auto / faster path: {worst:.3f} (paired {worst_paired:.3f})"]
    if stability:
        lines += ["", "auto's choices (forward, input gradient, weight gradient) in fresh processes, default "
                  "settings:", "", "| layer | choices | same in every process |", "|---|---|---|"]
        for layer, runs in stability.items():
            names = [",".join(c or "-" for c in run.values()) for run in runs]
            lines.append(f"| {layer} | {' / '.join(names)} | {len(set(names)) == 1} |")
        same = sum(len({json.dumps(r, sort_keys=True) for r in runs}) == 1 for runs in stability.values())
        lines += ["", f"- layers with the same choices in all {len(next(iter(stability.values())))} processes: "
                  f"{same} of {len(stability)} (f: fft, d: direct)"]
    return "\n".join(lines) + "\n"
