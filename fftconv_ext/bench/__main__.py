"""The benchmark: fftconv_ext.conv2d against F.conv2d (cuDNN / oneDNN) and the
naive torch.fft composition of the popular packages, on RepLKNet-like
depthwise layers.

    python -m fftconv_ext.bench [--device cpu|cuda] [--threads 2] [--quick] [--out DIR]

Prints a table and writes <out>/<machine>.json and .md. Times are medians
after warm-up (CUDA synchronised); ratios compare variants inside one run.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform

import torch
import torch.nn.functional as F

import fftconv_ext
from .baselines import naive_fft_conv2d
from .timing import time_call

# (name, batch, channels, resolution, kernel): depthwise 'same' layers of
# RepLKNet-31B stages (kernels 31/29/27/13 at 56/28/14/7) and the issue's
# reference shape.
SHAPES = [
    ("replknet-s1", 8, 64, 56, 31),
    ("replknet-31b-s1", 4, 128, 56, 31),
    ("replknet-31b-s2", 4, 256, 28, 29),
    ("replknet-31b-s3", 4, 512, 14, 27),
    ("replknet-31b-s4", 4, 1024, 7, 13),
]
QUICK = SHAPES[:3]


def machine_name(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device).replace(" ", "-").lower()
    cpu = "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip().replace(" ", "-").lower()
                    break
    except OSError:
        pass
    return f"{cpu}-{platform.machine()}-{threads}t"


def run(device: torch.device, shapes, dtype=torch.float32):
    rows = []
    gen = torch.Generator().manual_seed(0)
    for name, n, c, r, k in shapes:
        x = torch.randn(n, c, r, r, generator=gen, dtype=dtype).to(device)
        w = torch.randn(c, 1, k, k, generator=gen, dtype=dtype).to(device)
        b = torch.randn(c, generator=gen, dtype=dtype).to(device)
        pad = k // 2
        impls = {
            "fftconv_ext": lambda: fftconv_ext.conv2d(x, w, b, padding=pad, groups=c),
            "F.conv2d": lambda: F.conv2d(x, w, b, padding=pad, groups=c),
            "naive torch.fft": lambda: naive_fft_conv2d(x, w, b, pad, c),
        }
        ref = F.conv2d(x.double(), w.double(), b.double(), padding=pad, groups=c)
        row = {"shape": name, "input": [n, c, r, r], "kernel": k, "dtype": str(dtype).replace("torch.", "")}
        with torch.no_grad():
            for impl, fn in impls.items():
                y = fn()
                err = ((y.double() - ref).norm() / ref.norm()).item()
                t = time_call(fn, device, max_seconds=10.0 if impl == "F.conv2d" else 5.0)
                row[impl] = {**t, "rel_err": err}
        base = row["fftconv_ext"]["median_ms"]
        row["speedup_vs_F.conv2d"] = row["F.conv2d"]["median_ms"] / base
        row["speedup_vs_naive"] = row["naive torch.fft"]["median_ms"] / base
        rows.append(row)
        print(f"  {name:18s} done", flush=True)
    return rows


def table(rows) -> str:
    head = "| shape | input | k | fftconv_ext ms | F.conv2d ms | naive torch.fft ms | vs F.conv2d | vs naive | max rel err |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        err = max(r[i]["rel_err"] for i in ("fftconv_ext", "F.conv2d", "naive torch.fft"))
        lines.append(
            f"| {r['shape']} | {'x'.join(map(str, r['input']))} | {r['kernel']} | "
            f"{r['fftconv_ext']['median_ms']:.2f} | {r['F.conv2d']['median_ms']:.2f} | "
            f"{r['naive torch.fft']['median_ms']:.2f} | {r['speedup_vs_F.conv2d']:.1f}x | "
            f"{r['speedup_vs_naive']:.1f}x | {err:.1e} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m fftconv_ext.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (fixed for the whole run)")
    ap.add_argument("--quick", action="store_true", help="first three shapes only")
    ap.add_argument("--out", default="bench/results", help="folder for <machine>.json and .md")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shapes = QUICK if args.quick else SHAPES
    machine = machine_name(device, args.threads)
    print(f"fftconv_ext {fftconv_ext.__version__} | torch {torch.__version__} | device {device} ({machine}) | "
          f"threads {torch.get_num_threads()} | float32 forward, depthwise, padding 'same'")
    rows = run(device, shapes)
    md = table(rows)
    print(md)
    meta = {
        "machine": machine, "device": str(device), "torch": torch.__version__,
        "fftconv_ext": fftconv_ext.__version__, "threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "built_with_cuda": fftconv_ext.built_with_cuda(),
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{machine}.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    with open(os.path.join(args.out, f"{machine}.md"), "w") as f:
        f.write(f"# fftconv_ext benchmark on {machine}\n\n")
        f.write(", ".join(f"{k}: {v}" for k, v in meta.items()) + "\n\n")
        f.write("float32 forward, depthwise, padding 'same'; medians after warm-up.\n\n" + md + "\n")
    print(f"wrote {args.out}/{machine}.json and .md")


if __name__ == "__main__":
    main()
