"""The README's headline numbers, each measured again the way a user would measure it: float32,
a fixed thread count, torch.no_grad() (forward rows), one warm-up call per side, then the median
of repeats in which the sides alternate. Independent of the benchmark harness (no lockstep
rounds, no shared cache folder): if a headline and this script disagree, the headline is wrong.

    python bench/headlines.py                      # every headline, 2 threads
    python bench/headlines.py --only conv3d_21     # one of: see --help
    python bench/headlines.py --json out.json --md out.md   # also write the numbers

Each line prints the ratio the README quotes (slower side / fftconv_ext).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

import fftconv_ext
from fftconv_ext.bench.baselines import BestFFTComposition, BestFFTComposition3d
from fftconv_ext.bench.machine import finish_meta, run_meta


def medians_ms(fns: dict, repeats: int) -> dict:
    """{name: median ms}: one warm-up call each, then `repeats` rounds calling every side once."""
    for f in fns.values():
        f()
    times = {n: [] for n in fns}
    for _ in range(repeats):
        for n, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[n].append((time.perf_counter() - t0) * 1e3)
    return {n: statistics.median(t) for n, t in times.items()}


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _depthwise(shape, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = torch.randn(*shape, generator=g)
    w = torch.randn(c, 1, *(k,) * (len(shape) - 2), generator=g) / k
    b = torch.randn(c, generator=g)
    return x, w, b


def _geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def depthwise_31(repeats):
    """depthwise 31x31 on (8, 64, 56, 56) vs F.conv2d"""
    x, w, b = _depthwise((8, 64, 56, 56), 31)
    with torch.no_grad():
        t = medians_ms({"fftconv_ext": lambda: fftconv_ext.conv2d(x, w, b, padding=15, groups=64, algo="fft"),
                        "F.conv2d": lambda: F.conv2d(x, w, b, padding=15, groups=64)}, repeats)
    return t, {"vs F.conv2d": t["F.conv2d"] / t["fftconv_ext"]}


def sweep(repeats):
    """RepLKNet sweep (2, 384, R, R), R in 16/32/64, k in 13/21/31: geomean speedups"""
    ratios = {}
    times = {}
    for r in (16, 32, 64):
        for k in (13, 21, 31):
            x, w, b = _depthwise((2, 384, r, r), k)
            p = k // 2
            chunked, whole = BestFFTComposition(), BestFFTComposition(chunk=2 * 384)
            fns = {"fftconv_ext": lambda: fftconv_ext.conv2d(x, w, b, padding=p, groups=384, algo="fft"),
                   "F.conv2d": lambda: F.conv2d(x, w, b, padding=p, groups=384),
                   "composition (chunks)": lambda: chunked(x, w, b, p),
                   "composition (whole batch)": lambda: whole(x, w, b, p)}
            if _has("fft_conv_pytorch"):
                from fft_conv_pytorch import fft_conv
                fns["fft-conv-pytorch"] = lambda: fft_conv(x, w, b, padding=p, groups=384)
            if _has("torch_fftconv"):
                from torch_fftconv import fft_conv2d
                fns["torch-fftconv"] = lambda: fft_conv2d(x, w, b, padding=p, groups=384)
            with torch.no_grad():
                t = medians_ms(fns, repeats)
            t["best torch.fft composition"] = min(t.pop("composition (chunks)"), t.pop("composition (whole batch)"))
            times[f"R{r} k{k}"] = t
            for n, v in t.items():
                if n != "fftconv_ext":
                    ratios.setdefault(f"geomean vs {n}", []).append(v / t["fftconv_ext"])
    return times, {n: _geomean(v) for n, v in ratios.items()}


def sweep_backward(repeats):
    """forward + backward over the same sweep vs autograd through the best composition"""
    ratios, times = [], {}
    for r in (16, 32, 64):
        for k in (13, 21, 31):
            x, w, b = _depthwise((2, 384, r, r), k)
            p = k // 2
            chunked, whole = BestFFTComposition(), BestFFTComposition(chunk=2 * 384)
            leaves = [t.clone().requires_grad_() for t in (x, w, b)]
            gy = torch.randn(2, 384, r, r)

            def step(conv):
                return lambda: torch.autograd.grad(conv(*leaves), leaves, gy)
            t = medians_ms({
                "fftconv_ext": step(lambda x_, w_, b_: fftconv_ext.conv2d(x_, w_, b_, padding=p, groups=384,
                                                                           algo="fft")),
                "composition (chunks)": step(lambda x_, w_, b_: chunked(x_, w_, b_, p)),
                "composition (whole batch)": step(lambda x_, w_, b_: whole(x_, w_, b_, p))}, repeats)
            best = min(t["composition (chunks)"], t["composition (whole batch)"])
            times[f"R{r} k{k}"] = t
            ratios.append(best / t["fftconv_ext"])
    return times, {"geomean vs autograd through the best composition": _geomean(ratios)}


def transposed_31(repeats):
    """depthwise transposed 31x31 on (8, 64, 56, 56) vs F.conv_transpose2d / torch-fftconv"""
    x, w, b = _depthwise((8, 64, 56, 56), 31)
    fns = {"fftconv_ext": lambda: fftconv_ext.conv_transpose2d(x, w, b, padding=15, groups=64, algo="fft"),
           "F.conv_transpose2d": lambda: F.conv_transpose2d(x, w, b, padding=15, groups=64)}
    if _has("torch_fftconv"):
        from torch_fftconv import fft_conv_transpose2d
        fns["torch-fftconv"] = lambda: fft_conv_transpose2d(x, w, b, padding=15, groups=64)
    with torch.no_grad():
        t = medians_ms(fns, repeats)
    return t, {f"vs {n}": v / t["fftconv_ext"] for n, v in t.items() if n != "fftconv_ext"}


def conv3d_21(repeats):
    """depthwise 21^3 conv3d on (1, 48, 32, 32, 32) vs F.conv3d / torch-fftconv / best composition"""
    x, w, b = _depthwise((1, 48, 32, 32, 32), 21)
    best = BestFFTComposition3d()
    fns = {"fftconv_ext": lambda: fftconv_ext.conv3d(x, w, b, padding=10, groups=48, algo="fft"),
           "F.conv3d": lambda: F.conv3d(x, w, b, padding=10, groups=48),
           "best torch.fft composition": lambda: best(x, w, b, 10)}
    if _has("torch_fftconv"):
        from torch_fftconv import fft_conv3d
        fns["torch-fftconv"] = lambda: fft_conv3d(x, w, b, padding=10, groups=48)
    with torch.no_grad():
        t = medians_ms(fns, repeats)
    return t, {f"vs {n}": v / t["fftconv_ext"] for n, v in t.items() if n != "fftconv_ext"}


def replknet_31b(repeats):
    """whole RepLKNet-31B at 224^2, batch 8: converted vs original"""
    from fftconv_ext.models import replknet_31b as build
    torch.manual_seed(0)
    model = build().eval()
    model.structural_reparam()
    converted = fftconv_ext.convert(model, min_kernel_size=7)
    x = torch.randn(8, 3, 224, 224)
    with torch.no_grad():
        t = medians_ms({"converted": lambda: converted(x), "original": lambda: model(x)}, repeats)
    return t, {"original / converted": t["original"] / t["converted"]}


HEADLINES = {"depthwise_31": depthwise_31, "sweep": sweep, "sweep_backward": sweep_backward,
             "transposed_31": transposed_31, "conv3d_21": conv3d_21, "replknet_31b": replknet_31b}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", nargs="+", choices=sorted(HEADLINES), default=list(HEADLINES))
    ap.add_argument("--json", help="write the times and ratios here")
    ap.add_argument("--md", help="write the ratios as a markdown table here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    out = {"meta": run_meta(cpu, args.threads, repeats=args.repeats), "headlines": {}}
    for name in args.only:
        fn = HEADLINES[name]
        times, ratios = fn(args.repeats)
        out["headlines"][name] = {"what": fn.__doc__, "median_ms": times, "ratios": ratios}
        print(f"{name}: {fn.__doc__}")
        for k, v in ratios.items():
            print(f"    {k}: {v:.2f}x")
    finish_meta(out["meta"], cpu)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.md:
        with open(args.md, "w") as f:
            f.write(markdown(out))


def markdown(out: dict) -> str:
    meta = out["meta"]
    lines = ["# README headlines, measured by bench/headlines.py", "",
             " | ".join(f"{k} {v}" for k, v in meta.items()), "",
             "| headline | what | ratio |", "|---|---|---|"]
    for name, h in out["headlines"].items():
        for k, v in h["ratios"].items():
            lines.append(f"| `{name}` | {h['what']} | {k}: {v:.2f}x |")
    lines += ["", "Median times (ms):", ""]
    for name, h in out["headlines"].items():
        lines.append(f"- `{name}`: " + "; ".join(
            (f"{k}: " + ", ".join(f"{n} {t:.2f}" for n, t in v.items())) if isinstance(v, dict) else f"{k} {v:.2f}"
            for k, v in h["median_ms"].items()))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
