"""Where the time of one layer goes on a GPU: CUDA kernel times per implementation
(torch.profiler), for the GPU targets' layer, depthwise 31x31 on (32, 384, 32, 32).

    python bench/gpu_profile.py [--shape 32,384,32,32] [--kernel 31] [--json out.json]
    python bench/gpu_profile.py --device cpu --shape 1,4,16,16 --kernel 7   (a dry run of the script)

Used by bench/gpu_check.sh to decide what to make faster next; not a benchmark
(the profiler adds overhead): the timings to quote come from `python -m fftconv_ext.bench`.
"""
from __future__ import annotations

import argparse
import json
import os

import torch
from torch.profiler import ProfilerActivity, profile

import fftconv_ext
from fftconv_ext.bench import impls


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def kernel_table(fn, dev: torch.device, reps: int = 10):
    """Kernel times per call (on the CPU dry run: operator times)."""
    for _ in range(3):
        fn()
    _sync(dev)
    cuda = dev.type == "cuda"
    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        for _ in range(reps):
            fn()
        _sync(dev)
    rows = []
    for e in prof.key_averages():
        if cuda:
            t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        else:
            t = e.self_cpu_time_total
        if t > 0:
            rows.append({"kernel": e.key[:90], "calls_per_rep": e.count / reps, "us_per_rep": t / reps})
    rows.sort(key=lambda r: -r["us_per_rep"])
    return rows


def wall_us(fn, dev: torch.device, calls: int = 50) -> dict:
    """Wall time per call: back to back with one synchronisation at the end (how a model's
    layers run), and the median of synchronised single calls (how a benchmark times one)."""
    import time
    for _ in range(3):
        fn()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    _sync(dev)
    back_to_back = (time.perf_counter() - t0) / calls * 1e6
    single = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        single.append((time.perf_counter() - t0) * 1e6)
    single.sort()
    return {"back_to_back_us": back_to_back, "single_median_us": single[len(single) // 2]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="32,384,32,32")
    ap.add_argument("--kernel", type=int, default=31)
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of this script (the switches do nothing there)")
    args = ap.parse_args()
    n, c, h, w_ = (int(v) for v in args.shape.split(","))
    k = args.kernel
    g = torch.Generator().manual_seed(0)
    dev = torch.device(args.device)
    x = torch.randn(n, c, h, w_, generator=g).to(dev)
    w = torch.randn(c, 1, k, k, generator=g).to(dev) / k
    b = torch.randn(c, generator=g).to(dev)
    out, wall = {}, {}
    # gpu_check.sh starts this with FFTCONV_DEVICE_CHECKS=0 when the device checks fail their smoke test
    checks_off = fftconv_ext.backends.device_checks is False
    # " small-plane": the small-plane kernel (backends.cuda_small_plane); " host checks": the
    # finiteness and weight checks read back by the host (backends.device_checks = False)
    names = ("fftconv_ext", "fftconv_ext host checks", "fftconv_ext small-plane", "fftconv_ext small-plane host checks",
             "best torch.fft", "best torch.fft 2-D", "F.conv2d")
    with torch.no_grad():
        for name in names:
            fftconv_ext.backends.cuda_small_plane = " small-plane" in name
            fftconv_ext.backends.device_checks = not (name.endswith("host checks") or checks_off)
            fn = impls.FORWARD[name.replace(" small-plane", "").replace(" host checks", "")](x, w, b, k // 2, c)
            if fn is None:  # not on this device ("best torch.fft 2-D" is CUDA's)
                continue
            rows = kernel_table(fn, dev)
            out[name] = rows
            wall[name] = wall_us(fn, dev)
            total = sum(r["us_per_rep"] for r in rows)
            wall[name]["kernels_us"] = total
            print(f"\n{name}: {total:.1f} us of CUDA kernels per call, wall {wall[name]['back_to_back_us']:.1f} us "
                  f"back to back, {wall[name]['single_median_us']:.1f} us single ({args.shape}, k {k})")
            for r in rows[:10]:
                print(f"  {r['us_per_rep']:9.1f} us  x{r['calls_per_rep']:<5.1f} {r['kernel']}")
    fftconv_ext.backends.cuda_small_plane = False
    fftconv_ext.backends.device_checks = False if checks_off else None
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"shape": [n, c, h, w_], "kernel": k,
                       "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
                       "torch": torch.__version__, "kernels": out, "wall": wall}, f, indent=1)


if __name__ == "__main__":
    main()
