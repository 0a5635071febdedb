"""Every CUDA pipeline of the operator, forced in turn (docs/design.md §17), beside the best
torch.fft compositions (row-pruned and 2-D), cuDNN, torch-fftconv and cupyx where installed,
and algo='auto' / algo='fft' with their measured choice; forward and forward+backward on the
layer sweep's depthwise 'same' layers (RepLKNet Table 1 setup), in interleaved rounds
(medians, ratios inside the run), with each variant's peak extra forward memory as a multiple
of the output. Run by bench/gpu_check.sh; writes JSON and a markdown table.

    python bench/gpu_pipelines.py [--json out.json] [--md out.md] [--batch 32] [--channels 384]
    python bench/gpu_pipelines.py --device cpu --batch 2 --channels 4 --layers 8:5   # dry run
"""
from __future__ import annotations

import argparse
import json
import warnings

import torch
import torch.nn.functional as F

import fftconv_ext
from fftconv_ext import algo, cuda_pipelines
from fftconv_ext.bench.impls import FORWARD
from fftconv_ext.bench.memory import peak_allocated_bytes
from fftconv_ext.bench.timing import time_interleaved, with_backward

LAYERS = [(16, 13), (16, 31), (32, 13), (32, 31), (64, 13), (64, 31)]
BASELINES = ("F.conv2d", "best torch.fft", "best torch.fft 2-D", "torch-fftconv", "cupyx fftconvolve")


def _forced(name: str, pad: int, groups: int):
    """algo='fft' with one pipeline forced; the ones not yet verified on a GPU opted in."""
    def conv(x, w, b):
        with fftconv_ext.backends.flags(cuda_unverified=True), cuda_pipelines.forced_pipeline(name):
            return fftconv_ext.conv2d(x, w, b, padding=pad, groups=groups, algo="fft")
    return conv


def _chosen(a: str, pad: int, groups: int, unverified: bool):
    """algo='auto' or 'fft' as a user runs it: the default configuration (the cost model, the
    verified default pipeline), or measuring (backends.benchmark) with backends.cuda_unverified
    opted in, so that every pipeline is a candidate."""
    def conv(x, w, b):
        with fftconv_ext.backends.flags(cuda_unverified=unverified, benchmark=unverified):
            return fftconv_ext.conv2d(x, w, b, padding=pad, groups=groups, algo=a)
    return conv


# algo variants timed beside the forced pipelines: (name, algo, cuda_unverified)
CHOSEN = (("auto", "auto", False), ("fft", "fft", False), ("auto+unverified", "auto", True),
          ("fft+unverified", "fft", True))


def _rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.double() - ref).norm() / ref.norm()).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None)
    ap.add_argument("--md", default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--channels", type=int, default=384)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run (the pipeline switch has no effect there)")
    ap.add_argument("--layers", default=",".join(f"{r}:{k}" for r, k in LAYERS), help="R:k pairs (default: %(default)s)")
    ap.add_argument("--max-seconds", type=float, default=0.6, help="per variant and pass")
    args = ap.parse_args()
    layers = [tuple(int(v) for v in item.split(":")) for item in args.layers.split(",")]
    dev = torch.device(args.device)
    pipelines = [p for p in cuda_pipelines.PIPELINES]
    torch.manual_seed(0)
    rows = []
    header = ["layer", "pass"] + pipelines + ["auto", "fft", "F.conv2d", "best comp.", "best/ours", "cuDNN/ours"]
    print(" ".join(f"{h:>11}" for h in header))
    for r, k in layers:
        c, pad = args.channels, k // 2
        x = torch.randn(args.batch, c, r, r, device=dev)
        w = torch.randn(c, 1, k, k, device=dev) / k
        b = torch.randn(c, device=dev)
        convs = {p: _forced(p, pad, c) for p in pipelines}
        for name, a, unverified in CHOSEN:
            convs[name] = _chosen(a, pad, c, unverified)
        choices = {}
        with warnings.catch_warnings(record=True) as caught:  # a disqualified pipeline warns once
            warnings.simplefilter("always")
            for name, _, _ in CHOSEN:  # measured (and remembered) before they are timed
                before = set(algo._memory)
                convs[name](x, w, b)
                choices[name] = [v for k_, v in algo._memory.items() if k_ not in before]
        for name in BASELINES:
            made = FORWARD[name](x, w, b, pad, c)
            if made is not None:
                convs[name] = (lambda name=name: lambda x_, w_, b_: FORWARD[name](x_, w_, b_, pad, c)())()
        # errors of each pipeline against float64 on two batch elements
        xd, wd, bd = x[:2].double(), w.double(), b.double()
        ref = F.conv2d(xd, wd, bd, padding=pad, groups=c)
        errors = {p: _rel_err(convs[p](x[:2], w, b), ref) for p in pipelines}
        memory = {}
        for name in pipelines + ["auto", "F.conv2d", "best torch.fft", "best torch.fft 2-D"]:
            if name in convs:
                with torch.no_grad():
                    peak = peak_allocated_bytes(lambda name=name: convs[name](x, w, b), dev)
                memory[name] = peak["peak"] / peak["out"] - 1.0  # beyond the output itself
        for kind in ("forward", "fwd+bwd"):
            names = [n for n in convs if kind == "forward" or n in pipelines + [c_[0] for c_ in CHOSEN] + [
                "F.conv2d", "best torch.fft", "best torch.fft 2-D"]]
            if kind == "forward":
                fns = {n: (lambda conv=convs[n]: conv(x, w, b)) for n in names}
            else:
                fns = {n: with_backward(convs[n], x, w, b) for n in names}
            t = time_interleaved(fns, dev, warmup=2, rounds=30, max_seconds=args.max_seconds, lockstep=True)
            med = {n: v["median_ms"] for n, v in t.items()}
            ours = min(med[p] for p in pipelines)
            best = min(med[n] for n in ("best torch.fft", "best torch.fft 2-D") if n in med)
            row = {"layer": f"{args.batch}x{c}x{r}x{r} k{k}", "pass": kind, "median_ms": med,
                   "best_composition_over_fastest_pipeline": best / ours,
                   "cudnn_over_fastest_pipeline": med["F.conv2d"] / ours,
                   # auto's candidates by default: cuDNN and the verified pipelines
                   "auto_over_fastest_candidate": med["auto"] / min(
                       [med["F.conv2d"]] + [med[p] for p in pipelines if p in cuda_pipelines.verified_pipelines()]),
                   "auto_unverified_over_fastest_candidate": med["auto+unverified"] / min(ours, med["F.conv2d"]),
                   "rel_err": errors, "extra_memory_over_output": memory, "choices": choices,
                   "warnings": [str(w_.message) for w_ in caught]}
            rows.append(row)
            cells = [f"R{r} k{k}", kind] + [f"{med[p]:.3f}" for p in pipelines] + \
                [f"{med['auto']:.3f}", f"{med['fft']:.3f}", f"{med['F.conv2d']:.3f}", f"{best:.3f}",
                 f"{best / ours:.2f}", f"{med['F.conv2d'] / ours:.2f}"]
            print(" ".join(f"{v:>11}" for v in cells))
        print("    rel err:", ", ".join(f"{p} {e:.1e}" for p, e in errors.items()),
              "| extra memory / output:", ", ".join(f"{n} {m:.2f}" for n, m in memory.items()),
              "| choices:", choices)
        # written after every layer: a stage that runs out of time keeps what it measured
        result = {"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
                  "torch": torch.__version__, "batch": args.batch, "channels": args.channels,
                  "verified": sorted(cuda_pipelines.verified_pipelines()), "rows": rows}
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
        if args.md:
            with open(args.md, "w") as f:
                f.write(markdown(result))


def markdown(result: dict) -> str:
    lines = [f"# CUDA pipelines: {result['device']} (torch {result['torch']})", "",
             "Medians in ms (float32, depthwise 'same', batch %d, %d channels); ratios inside this run. "
             "Pipelines verified on a GPU when this ran: %s." % (result["batch"], result["channels"],
                                                                  ", ".join(result["verified"]) or "none"), ""]
    pipes = list(result["rows"][0]["rel_err"]) if result["rows"] else []
    lines.append("| layer | pass | " + " | ".join(pipes) + " | auto | auto+unverified | best torch.fft | cuDNN | best "
                 "comp. / fastest pipeline | cuDNN / fastest pipeline | auto / fastest candidate | auto+unverified / "
                 "fastest candidate | max extra memory / output |")
    lines.append("|" + "---|" * (len(pipes) + 11))
    for row in result["rows"]:
        m = row["median_ms"]
        best = min(m[n] for n in ("best torch.fft", "best torch.fft 2-D") if n in m)
        mem = max(row["extra_memory_over_output"].get(p, 0.0) for p in pipes) if pipes else 0.0
        lines.append(f"| {row['layer']} | {row['pass']} | " + " | ".join(f"{m[p]:.3f}" for p in pipes) +
                     f" | {m['auto']:.3f} | {m['auto+unverified']:.3f} | {best:.3f} | {m['F.conv2d']:.3f} | "
                     f"{row['best_composition_over_fastest_pipeline']:.2f} | {row['cudnn_over_fastest_pipeline']:.2f} | "
                     f"{row['auto_over_fastest_candidate']:.2f} | {row['auto_unverified_over_fastest_candidate']:.2f} | "
                     f"{mem:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
