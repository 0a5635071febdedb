"""``python -m fftconv_ext.bench --train``: a training step (forward, backward, optimizer
step) with ``algo="auto"`` against ``algo="fft"`` and ``algo="direct"``, per sweep layer and
for whole converted networks, and whether auto makes the same choices in fresh processes.

auto's target: its step within 10 % of the faster of the two paths. First steps are timed in
fresh processes (first_step_worker; the median of FIRST_STEP_PROCESSES), after one warm-up step
of an unrelated small layer on each algo so that what every process pays once (threads,
libraries, the first run of auto's own code) is left out: auto's first step against a plain
step of the faster path, and the faster path's own first step beside it (what any convolution
pays on a new shape: plans, primitives, first-touch memory).
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

from .timing import time_auto_against_paths

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
    first = candidate_timing.time_once(steps["auto"], device)  # in this process, after other layers
    # lockstep rounds until one path has used max_seconds: a layer with 2 ms steps gets a
    # hundred rounds (15 had left its auto, the direct path itself, 13 % "slower" by medians)
    t = time_auto_against_paths(steps, device, rounds=100, max_seconds=max_seconds)
    med, faster, paired = t["median_ms"], t["faster"], t["paired"]
    return {"layer": name, "input": list(x.shape), "median_ms": med, "auto_over_best": med["auto"] / med[faster],
            "auto_paired_over_best": paired, "faster": faster, "first_auto_step_in_run_ms": first * 1e3,
            "rounds": t["rounds"]}


def sweep_layers(full: bool = False):
    from .sweep import SWEEP_K_DEFAULT, SWEEP_K_FULL, SWEEP_R
    return [(R, k) for R in SWEEP_R for k in (SWEEP_K_FULL if full else SWEEP_K_DEFAULT)]


_MODELS = ("RepLKNet-31B", "ConvNeXt-T")


def _build(spec: Dict, algo: str, device):
    """(module, input) of a row: {"R", "k", "batch"} for a sweep layer, {"model", "batch",
    "resolution"} for a converted network."""
    torch.manual_seed(0)
    if "model" in spec:
        from ..models import convnext_tiny, replknet_31b
        base = {"RepLKNet-31B": replknet_31b, "ConvNeXt-T": convnext_tiny}[spec["model"]](num_classes=10)
        r = spec["resolution"]
        return fftconv_ext.convert(base.to(device), algo=algo), torch.randn(spec["batch"], 3, r, r, device=device)
    return (_layer(384, spec["k"], algo, device),
            torch.randn(spec["batch"], 384, spec["R"], spec["R"], device=device))


def first_step_worker(spec: Dict, algo: str, device: str = "cpu", plain_steps: int = 5) -> Dict:
    """In a fresh process: one warm-up step of a small unrelated layer on each algo, then the
    first step of the row's module on `algo` and the median of `plain_steps` more (ms)."""
    import statistics
    dev = torch.device(device)
    warm = torch.randn(1, 8, 12, 12, device=dev)
    for a in ALGOS:  # auto too: its own code's first run (imports, first calls) is once per process
        _step_fn(fftconv_ext.nn.FFTConv2d(8, 8, 5, padding=2, groups=8, algo=a).to(dev), warm, dev)()
    model, x = _build(spec, algo, dev)
    step = _step_fn(model, x, dev)
    first = candidate_timing.time_once(step, dev) * 1e3
    plain = statistics.median(candidate_timing.time_once(step, dev) * 1e3 for _ in range(plain_steps))
    return {"first_ms": first, "plain_ms": plain}


_FIRST = """
import json, torch
from fftconv_ext.bench.train_step import first_step_worker
torch.set_num_threads({threads})
print(json.dumps(first_step_worker({spec!r}, {algo!r}, {device!r})))
"""


def _default_env() -> Dict[str, str]:
    """This process's environment without FFTCONV_ settings: a fresh process on the defaults."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FFTCONV_")}


# fresh processes per first-step figure: one first step is one sample, so the median of a few
# (with 3, auto and the fft path, the same code on R64 k31, differed by 1.41x; with 5, by 0.97x)
FIRST_STEP_PROCESSES = 5


def _first_step(spec: Dict, algo: str, device, threads: int) -> Dict:
    """first_step_worker's two times (ms) in one fresh process."""
    code = _FIRST.format(threads=threads, spec=spec, algo=algo, device=str(device))
    env = _default_env()
    if fftconv_ext.backends.benchmark:
        env["FFTCONV_BENCHMARK"] = "1"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"first-step run failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _first_steps(spec: Dict, algos, device, threads: int, processes: int = FIRST_STEP_PROCESSES) -> List[Dict]:
    """Per algo, medians over `processes` fresh processes of its first-step times, the algos
    alternating so that a slow spell of the machine falls on all of them alike."""
    import statistics
    runs = {a: [] for a in algos}
    for _ in range(processes):
        for a in algos:
            runs[a].append(_first_step(spec, a, device, threads))
    return [{k: statistics.median(r[k] for r in runs[a]) for k in ("first_ms", "plain_ms")} for a in algos]


def run_train(device: torch.device, batch: int, full: bool = False, model_batch: int = 2,
              model_resolution: int = 64, first_steps: bool = True) -> List[Dict]:
    specs = [(f"sweep R{R} k{k}", {"R": R, "k": k, "batch": batch}, 1.0) for R, k in sweep_layers(full)]
    specs += [(f"{m} @{model_resolution}", {"model": m, "batch": model_batch, "resolution": model_resolution}, 4.0)
              for m in _MODELS]
    rows = []
    for name, spec, seconds in specs:
        x = _build(spec, "fft", device)[1]
        rows.append(_compare(name, lambda a, spec=spec: _build(spec, a, device)[0], x, device, seconds))
        row = rows[-1]
        if first_steps:
            threads = torch.get_num_threads()
            auto, faster = _first_steps(spec, ("auto", row["faster"]), device, threads)
            best = min(row["median_ms"]["fft"], row["median_ms"]["direct"])
            row.update(first_auto_step_ms=auto["first_ms"], first_faster_step_ms=faster["first_ms"],
                       first_step_over_best=auto["first_ms"] / best,
                       first_faster_step_over_best=faster["first_ms"] / best,
                       first_auto_over_first_faster=auto["first_ms"] / faster["first_ms"])
        print(f"  train step {name}: auto/best {row['auto_over_best']:.3f}"
              + (f", first auto step / faster step {row['first_step_over_best']:.2f}" if first_steps else ""),
              flush=True)
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
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_default_env(),
                           timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"stability run failed: {r.stderr[-2000:]}")
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    layers = runs[0].keys()
    return {layer: [run[layer] for run in runs] for layer in layers}


def train_markdown(rows: List[Dict], stability: Dict) -> str:
    first = all("first_step_over_best" in r for r in rows)
    lines = ["| layer | input | auto ms | fft ms | direct ms | auto / faster | paired |"
             + (" first auto step / faster step | the faster path's first step / its step | first auto step / "
                "first faster step |" if first else ""),
             "|---|---|---|---|---|---|---|" + ("---|---|---|" if first else "")]
    for r in rows:
        m = r["median_ms"]
        line = (f"| {r['layer']} | {'x'.join(map(str, r['input']))} | {m['auto']:.2f} | {m['fft']:.2f} | "
                f"{m['direct']:.2f} | {r['auto_over_best']:.3f} | {r['auto_paired_over_best']:.3f} |")
        if first:
            line += (f" {r['first_step_over_best']:.2f}x | {r['first_faster_step_over_best']:.2f}x | "
                     f"{r['first_auto_over_first_faster']:.2f} |")
        lines.append(line)
    worst = max(r["auto_over_best"] for r in rows)
    worst_paired = max(r["auto_paired_over_best"] for r in rows)
    lines += ["", f"- worst auto / faster path: {worst:.3f} (paired {worst_paired:.3f})"]
    if first:
        lines += [f"- first auto step / faster step: worst {max(r['first_step_over_best'] for r in rows):.2f}x; "
                  f"the faster path's own first step: worst {max(r['first_faster_step_over_best'] for r in rows):.2f}x; "
                  f"first auto step / first step of the faster path: worst "
                  f"{max(r['first_auto_over_first_faster'] for r in rows):.2f} (medians of {FIRST_STEP_PROCESSES} fresh processes each)"]
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
