"""One FiT/ViT latency measurement in a fresh process (see bench/fit.py);
prints one JSON line: median ms, parameters, peak memory above the state
before the first forward."""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ..models import TRANSFORMERS, create_model


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> None:
    # VmHWM is this process's own high-water mark (ru_maxrss would carry the
    # parent's across fork/exec); writing 5 to clear_refs resets it (Linux >= 4.0).
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, choices=TRANSFORMERS)
    ap.add_argument("--img", type=int, required=True)
    ap.add_argument("--patch", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    torch.manual_seed(0)
    model = create_model(a.model, img_size=a.img, patch_size=a.patch, num_classes=1000, depth=a.depth).to(device).eval()
    with torch.device("meta"):  # parameters of the full-depth model, without allocating it
        full = create_model(a.model, img_size=a.img, patch_size=a.patch, num_classes=1000)
    params = sum(p.numel() for p in full.parameters())
    x = torch.randn(a.batch, 3, a.img, a.img, device=device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        _reset_peak_rss()
        base = _status_mib("VmRSS")
    warmup, repeats = (3, a.repeats or 10) if cuda else (1, a.repeats or 3)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(x)
            if cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:  # the process's RSS high-water mark above the state before the first forward
        peak = _status_mib("VmHWM") - base
    print(json.dumps({"status": "ok", "median_ms": statistics.median(times), "min_ms": min(times),
                      "repeats": len(times), "params": params, "peak_mib": peak, "depth": a.depth}))


if __name__ == "__main__":
    main()
