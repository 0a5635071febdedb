"""Where the time of one layer goes on a GPU: CUDA kernel times per implementation
(torch.profiler), for the GPU targets' layer, depthwise 31x31 on (32, 384, 32, 32).

    python bench/gpu_profile.py [--shape 32,384,32,32] [--kernel 31] [--json out.json]

Used by bench/gpu_check.sh to decide what to make faster next; not a benchmark
(the profiler adds overhead): the timings to quote come from `python -m fftconv_ext.bench`.
"""
from __future__ import annotations

import argparse
import json
import os

import torch
from torch.profiler import ProfilerActivity, profile

from fftconv_ext.bench import impls


def kernel_table(fn, reps: int = 10):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if t > 0:
            rows.append({"kernel": e.key[:90], "calls_per_rep": e.count / reps, "us_per_rep": t / reps})
    rows.sort(key=lambda r: -r["us_per_rep"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="32,384,32,32")
    ap.add_argument("--kernel", type=int, default=31)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    n, c, h, w_ = (int(v) for v in args.shape.split(","))
    k = args.kernel
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w_, generator=g).cuda()
    w = torch.randn(c, 1, k, k, generator=g).cuda() / k
    b = torch.randn(c, generator=g).cuda()
    out = {}
    with torch.no_grad():
        for name in ("fftconv_ext", "fftconv_ext fused", "best torch.fft", "best torch.fft 2-D", "F.conv2d"):
            # "fused": the fused small-plane kernel (FFTCONV_CUDA_FUSED=1, read per call)
            os.environ["FFTCONV_CUDA_FUSED"] = "1" if name.endswith("fused") else "0"
            fn = impls.FORWARD[name.replace(" fused", "")](x, w, b, k // 2, c)
            rows = kernel_table(fn)
            out[name] = rows
            total = sum(r["us_per_rep"] for r in rows)
            print(f"\n{name}: {total:.1f} us of CUDA kernels per call ({args.shape}, k {k})")
            for r in rows[:10]:
                print(f"  {r['us_per_rep']:9.1f} us  x{r['calls_per_rep']:<5.1f} {r['kernel']}")
    os.environ.pop("FFTCONV_CUDA_FUSED", None)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"shape": [n, c, h, w_], "kernel": k, "device": torch.cuda.get_device_name(),
                       "torch": torch.__version__, "kernels": out}, f, indent=1)


if __name__ == "__main__":
    main()
