"""``python -m fftconv_ext.bench --heldout``: algo="auto" on layers that neither the calibration
nor the other suites contain: strides, dilations, 'valid' padding, strips, non-square inputs,
one-channel filters, dense and grouped layers, 1-D and 3-D ones. Each is timed forward (no
gradients) and as forward + backward (input, weight and bias gradients), auto against both of
its paths in lockstep rounds, auto paired with each; the target is auto within 10 % of the faster
path everywhere, as on the suites.
"""
from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from typing import Dict, List

import torch

import fftconv_ext

from .timing import time_auto_against_paths, with_backward

# (name, input shape, weight shape, stride, padding, dilation, groups)
LAYERS = [
    ("depthwise 48x48 9x9", (2, 64, 48, 48), (64, 1, 9, 9), 1, 4, 1, 64),
    ("depthwise 28x28 15x15", (4, 128, 28, 28), (128, 1, 15, 15), 1, 7, 1, 128),
    ("depthwise 24x40 9x9", (2, 96, 24, 40), (96, 1, 9, 9), 1, 4, 1, 96),
    ("depthwise 7x7 stride 2", (2, 128, 32, 32), (128, 1, 7, 7), 2, 3, 1, 128),
    ("depthwise 7x7 dilation 2", (2, 128, 32, 32), (128, 1, 7, 7), 1, 6, 2, 128),
    ("depthwise 13x13 'valid'", (2, 128, 40, 40), (128, 1, 13, 13), 1, 0, 1, 128),
    ("depthwise strip 1x15", (2, 96, 40, 40), (96, 1, 1, 15), 1, (0, 7), 1, 96),
    ("depthwise strip 15x1", (2, 96, 40, 40), (96, 1, 15, 1), 1, (7, 0), 1, 96),
    ("depthwise 8x8 7x7, 512 channels", (8, 512, 8, 8), (512, 1, 7, 7), 1, 3, 1, 512),
    ("depthwise 128x128 31x31", (1, 32, 128, 128), (32, 1, 31, 31), 1, 15, 1, 32),
    ("depthwise 96x96 19x19", (1, 64, 96, 96), (64, 1, 19, 19), 1, 9, 1, 64),
    ("one channel 256x256 63x63", (1, 1, 256, 256), (1, 1, 63, 63), 1, 31, 1, 1),
    ("dense 16x16 9x9, 32 channels", (2, 32, 16, 16), (32, 32, 9, 9), 1, 4, 1, 1),
    ("dense 48x48 5x5, 32 to 64", (1, 32, 48, 48), (64, 32, 5, 5), 1, 2, 1, 1),
    ("stem 64x64 7x7, 3 to 64", (2, 3, 64, 64), (64, 3, 7, 7), 1, 3, 1, 1),
    ("grouped 28x28 7x7, 8 groups", (2, 64, 28, 28), (64, 8, 7, 7), 1, 3, 1, 8),
    ("depthwise 1-D L2048 65 taps", (8, 32, 2048), (32, 1, 65), 1, 32, 1, 32),
    ("depthwise 1-D L512 17 taps", (4, 256, 512), (256, 1, 17), 1, 8, 1, 256),
    ("dense 1-D L2048 47 taps", (2, 24, 2048), (24, 24, 47), 1, 23, 1, 1),
    ("depthwise 1-D L1024 global", (2, 64, 1024), (64, 1, 1023), 1, 511, 1, 64),
    ("depthwise 3-D 24^3 5x5x5", (1, 32, 24, 24, 24), (32, 1, 5, 5, 5), 1, 2, 1, 32),
    ("depthwise 3-D 10x20x20 9x9x9", (2, 48, 10, 20, 20), (48, 1, 9, 9, 9), 1, 4, 1, 48),
    ("dense 3-D 12^3 5x5x5, 8 channels", (1, 8, 12, 12, 12), (8, 8, 5, 5, 5), 1, 2, 1, 1),
    ("depthwise 3-D 16^3 11x11x11", (1, 64, 16, 16, 16), (64, 1, 11, 11, 11), 1, 5, 1, 64),
]
ALGOS = ("auto", "fft", "direct")
_CONV = {3: fftconv_ext.conv1d, 4: fftconv_ext.conv2d, 5: fftconv_ext.conv3d}


def _row(layer, device, budget: float) -> Dict:
    name, x_shape, w_shape, stride, padding, dilation, groups = layer
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*x_shape, generator=g).to(device)
    w = (torch.randn(*w_shape, generator=g) / math.prod(w_shape[2:])).to(device)
    b = torch.randn(w_shape[0], generator=g).to(device)
    conv = _CONV[len(x_shape)]
    calls = {a: (lambda x_, w_, b_, a=a: conv(x_, w_, b_, stride, padding, dilation, groups, algo=a)) for a in ALGOS}
    row = {"layer": name, "input": list(x_shape), "weight": list(w_shape), "stride": stride, "padding": padding,
           "dilation": dilation, "groups": groups}
    with torch.no_grad():
        row["forward"] = time_auto_against_paths({a: (lambda f=f: f(x, w, b)) for a, f in calls.items()}, device,
                                                 rounds=200, max_seconds=budget)
    row["training"] = time_auto_against_paths({a: with_backward(f, x, w, b) for a, f in calls.items()}, device,
                                              rounds=200, max_seconds=budget)
    return row


# The suite runs in this many fresh processes, each layer's figures the medians over them: a
# process's state can slow oneDNN's direct kernels for its whole life (seen: the 1x21 strip's
# direct weight gradient at 12.7 ms in one process of five, 3.3-4.4 ms in the others, and every
# direct step of that process with it), which one process would report as the layer's.
PROCESSES = 3

_CHILD = """
import json, torch
from fftconv_ext.bench.heldout import run_heldout
torch.set_num_threads({threads})
print(json.dumps(run_heldout(torch.device({device!r}), {budget!r})))
"""


def run_heldout(device: torch.device, budget: float = 1.5, progress=None, processes: int = 1,
                threads: int = 2) -> List[Dict]:
    """The rows of every layer, timed in this process (processes=1) or in `processes` fresh
    ones, one after another (combine_processes)."""
    if processes > 1:
        from .train_step import _default_env
        runs = []
        for i in range(processes):
            r = subprocess.run([sys.executable, "-c", _CHILD.format(threads=threads, device=str(device), budget=budget)],
                               capture_output=True, text=True, env=_default_env(), timeout=1800)
            if r.returncode != 0:
                raise RuntimeError(f"held-out run failed: {r.stderr[-2000:]}")
            runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
            if progress:
                progress(f"process {i + 1} of {processes} done")
        return combine_processes(runs)
    rows = []
    for layer in LAYERS:
        rows.append(_row(layer, device, budget))
        if progress:
            r = rows[-1]
            progress(f"{r['layer']}: forward auto/faster {r['forward']['auto_over_faster']:.3f}, training "
                     f"{r['training']['auto_over_faster']:.3f}")
    return rows


def combine_processes(runs: List[List[Dict]]) -> List[Dict]:
    """One row per layer from the rows of several processes: per part, each path's median time
    and the paired ratio are the medians over processes, auto / faster comes from those medians,
    and each process's own auto / faster is kept (per_process)."""
    rows = []
    for per_layer in zip(*runs):
        row = {k: v for k, v in per_layer[0].items() if k not in ("forward", "training")}
        for part in ("forward", "training"):
            med = {a: statistics.median(r[part]["median_ms"][a] for r in per_layer) for a in ALGOS}
            faster = "fft" if med["fft"] <= med["direct"] else "direct"
            paired = statistics.median(r[part]["paired"] if r[part]["faster"] == faster else
                                       r[part]["paired_vs"][faster] for r in per_layer)
            row[part] = {"median_ms": med, "faster": faster, "auto_over_faster": med["auto"] / med[faster],
                         "paired": paired, "rounds": sum(r[part]["rounds"] for r in per_layer),
                         "per_process": [r[part]["auto_over_faster"] for r in per_layer]}
        rows.append(row)
    return rows


def heldout_markdown(rows: List[Dict]) -> str:
    lines = ["| layer | input | weight (stride, padding, dilation, groups) | forward auto / fft / direct ms | "
             "auto / faster | paired | training step auto / fft / direct ms | auto / faster | paired |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["layer"], "x".join(map(str, r["input"])),
                 f"{'x'.join(map(str, r['weight']))} ({r['stride']}, {r['padding']}, {r['dilation']}, {r['groups']})"]
        for part in ("forward", "training"):
            p = r[part]
            m = p["median_ms"]
            cells += [f"{m['auto']:.2f} / {m['fft']:.2f} / {m['direct']:.2f}", f"{p['auto_over_faster']:.3f}",
                      f"{p['paired']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for part in ("forward", "training"):
        worst = max(rows, key=lambda r: r[part]["auto_over_faster"])
        worst_paired = max(rows, key=lambda r: r[part]["paired"])
        geomean = math.exp(sum(math.log(r[part]["auto_over_faster"]) for r in rows) / len(rows))
        lines.append(f"\n- {part}: worst auto / faster path {worst[part]['auto_over_faster']:.3f} ({worst['layer']}), "
                     f"worst paired {worst_paired[part]['paired']:.3f} ({worst_paired['layer']}); geomean {geomean:.3f}")
    return "\n".join(lines)
