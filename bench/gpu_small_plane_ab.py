"""A/B of the small-plane CUDA kernel (FFTCONV_CUDA_SMALL_PLANE=1) against the
cuFFT pipeline it replaces, cuDNN and the best torch.fft composition, on the
layer sweep's depthwise 'same' layers (B=32, 384 channels), in interleaved
rounds (medians, and same-round ratios). Decides whether the kernel becomes
the default; run by bench/gpu_check.sh.

    python bench/gpu_small_plane_ab.py [--json out.json] [--batch 32] [--channels 384]
"""
from __future__ import annotations

import argparse
import json
import os

import torch
import torch.nn.functional as F

import fftconv_ext
import fftconv_ext._testing  # which layers the small-plane kernel takes (a developer script: test hooks are fine here)
from fftconv_ext.bench.baselines import BestFFTComposition
from fftconv_ext.bench.timing import time_interleaved, with_backward

LAYERS = [(16, 7), (16, 13), (16, 31), (32, 7), (32, 13), (32, 31), (64, 7), (64, 31)]


# gpu_check.sh starts this with FFTCONV_DEVICE_CHECKS=0 when the device checks fail their smoke
# test (a start-up default of fftconv_ext.backends): then every variant checks on the host.
DEVICE_CHECKS_OFF = fftconv_ext.backends.device_checks is False


def _ours(small_plane: bool, pad, device_checks: bool = True):
    """algo='fft' with the pipeline forced on the calling thread: a recorded choice (which
    algo='fft' makes on a first call) would override backends.cuda_small_plane, so that toggling it
    timed one pipeline twice. The small-plane kernel has not passed the GPU check yet: opted in here."""
    pipeline = "small_plane" if small_plane else "rows"

    def conv(x, w, b):
        with fftconv_ext.backends.flags(cuda_unverified=True,
                                        device_checks=device_checks and not DEVICE_CHECKS_OFF), \
                fftconv_ext.cuda_pipelines.forced_pipeline(pipeline):
            return fftconv_ext.conv2d(x, w, b, padding=pad, groups=x.shape[1], algo="fft")
    return conv


# "host checks": the finiteness and weight checks read back by the host (a wait for the
# device every call) instead of flagged on the device (csrc/fftconv/device_checks.h)
PAIRS = [("small_plane", "cufft"), ("small_plane", "composition"), ("small_plane", "cudnn"), ("small_plane", "host checks")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--channels", type=int, default=384)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of this script (the switch has no effect there)")
    ap.add_argument("--layers", default=",".join(f"{r}:{k}" for r, k in LAYERS),
                    help="R:k pairs, comma-separated (default: %(default)s)")
    args = ap.parse_args()
    layers = [tuple(int(v) for v in item.split(":")) for item in args.layers.split(",")]
    dev = torch.device(args.device)
    torch.manual_seed(0)
    rows = []
    print(f"{'layer':>14} {'pass':>8} {'lengths':>9} {'small_plane':>8} {'cuFFT':>8} {'compos.':>8} {'cuDNN':>8} "
          f"{'vs cuFFT':>8} {'vs comp':>8} {'vs cuDNN':>8} {'vs host':>8} {'rel err':>8}")
    for r, k in layers:
        x = torch.randn(args.batch, args.channels, r, r, device=dev)
        w = torch.randn(args.channels, 1, k, k, device=dev)
        b = torch.randn(args.channels, device=dev)
        pad = k // 2
        lengths = tuple(fftconv_ext._testing.small_plane_lengths(list(x.shape), list(w.shape), [1, 1], [pad] * 4,
                                                            [1, 1], args.channels, False))
        best = BestFFTComposition()
        convs = {"small_plane": _ours(True, pad), "cufft": _ours(False, pad), "host checks": _ours(True, pad, False),
                 "composition": lambda x_, w_, b_: best(x_, w_, b_, pad),
                 "cudnn": lambda x_, w_, b_: F.conv2d(x_, w_, b_, padding=pad, groups=args.channels)}
        # errors against float64 autograd, on two batch elements (float64 convolutions are slow on a GPU)
        x2 = x[:2].detach().requires_grad_()
        ws, bs = w.detach().requires_grad_(), b.detach().requires_grad_()
        xd, wd, bd = (t.detach().double().requires_grad_() for t in (x2, w, b))
        ref = F.conv2d(xd, wd, bd, padding=pad, groups=args.channels)
        y2 = convs["small_plane"](x2, ws, bs)
        gy = torch.randn_like(ref)
        errors = {"forward": ((y2.double() - ref).norm() / ref.norm()).item(),
                  "fwd+bwd": max(((g.double() - e).norm() / e.norm()).item() for g, e in
                                 zip(torch.autograd.grad(y2, (x2, ws, bs), gy.float()),
                                     torch.autograd.grad(ref, (xd, wd, bd), gy)))}
        for kind in ("forward", "fwd+bwd"):
            err = errors[kind]
            if kind == "forward":
                fns = {n: (lambda conv=conv: conv(x, w, b)) for n, conv in convs.items()}
            else:
                fns = {n: with_backward(conv, x, w, b) for n, conv in convs.items()}
            t = time_interleaved(fns, dev, warmup=2, rounds=30, max_seconds=1.0, lockstep=True, paired=PAIRS)
            pr = t["small_plane"]["paired_ratio_vs"]
            row = {"layer": f"{args.batch}x{args.channels}x{r}x{r} k{k}", "pass": kind, "lengths": list(lengths),
                   "median_ms": {n: v["median_ms"] for n, v in t.items()},
                   "speedup_paired": {n: 1.0 / v for n, v in pr.items()}, "rel_err": err}
            rows.append(row)
            m = row["median_ms"]
            print(f"{'R%d k%d' % (r, k):>14} {kind:>8} {'x'.join(map(str, lengths)) or 'declined':>9} "
                  f"{m['small_plane']:8.3f} {m['cufft']:8.3f} {m['composition']:8.3f} {m['cudnn']:8.3f} "
                  f"{1 / pr['cufft']:8.2f} {1 / pr['composition']:8.2f} {1 / pr['cudnn']:8.2f} "
                  f"{1 / pr['host checks']:8.2f} {err:8.1e}")
    # Shared memory per block (planes per block) on the target layer: the default is a guess until measured.
    x = torch.randn(args.batch, args.channels, 32, 32, device=dev)
    w = torch.randn(args.channels, 1, 31, 31, device=dev)
    b = None
    sweep = {}
    for kb in (8, 16, 24, 32, 48, 96):
        def run(kb=kb):
            with fftconv_ext.backends.flags(cuda_small_plane_shared_kb=kb):
                return _ours(True, 15)(x, w, b)
        sweep[f"{kb} KB"] = run
    t = time_interleaved(sweep, dev, warmup=2, rounds=20, max_seconds=0.5, lockstep=True)
    shared = {n: v["median_ms"] for n, v in t.items()}
    print("R32 k31, shared memory per block:", ", ".join(f"{n}: {v:.3f} ms" for n, v in shared.items()))
    if args.json:
        with open(args.json, "w") as f:
            name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
            json.dump({"device": name, "torch": torch.__version__, "rows": rows,
                       "shared_sweep_r32_k31": shared}, f, indent=1)


if __name__ == "__main__":
    main()
