"""Whole-network inference: original model against fftconv_ext.convert(model)."""
from __future__ import annotations

import time
from typing import Dict, List

import torch

import fftconv_ext
from ..models import convnext_tiny, replknet_31b
from .memory import quiet_profiler
from .timing import time_interleaved


def _peak_of(fn, device) -> float:
    """Peak MiB of PyTorch allocations during one call (see bench/memory.py)."""
    from .memory import peak_allocated_bytes
    with torch.no_grad():
        return peak_allocated_bytes(fn, device)["peak"] / 2**20


def time_shares(fn, device: torch.device) -> Dict[str, float]:
    """Share of one call's time by kind (torch.profiler, inclusive times of the
    top-level ops): the FFT operator, other convolutions (aten::conv2d), the
    rest. Shows how much of a converted network the FFT layers still take,
    hence the most any faster FFT could gain."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.no_grad(), quiet_profiler(), profile(activities=acts) as prof:
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall_us = (time.perf_counter() - t0) * 1e6
    attr = "device_time_total" if device.type == "cuda" else "cpu_time_total"
    fft = conv = 0.0
    for e in prof.key_averages():
        if e.key.startswith("fftconv::conv2d_forward"):
            fft += float(getattr(e, attr))
        elif e.key == "aten::conv2d":
            conv += float(getattr(e, attr))
    total = wall_us if device.type == "cpu" else max(wall_us, fft + conv)
    return {"fft": fft / total, "other convolutions": conv / total, "rest": max(0.0, 1 - (fft + conv) / total)}


def run_models(device: torch.device, batch: int, resolution: int = 224) -> List[Dict]:
    rows = []
    for name, build in (("RepLKNet-31B", replknet_31b), ("ConvNeXt-T", convnext_tiny)):
        torch.manual_seed(0)
        model = build().to(device).eval()
        if hasattr(model, "structural_reparam"):
            model.structural_reparam()  # the inference form, for both sides
        converted = fftconv_ext.convert(model, min_kernel_size=7)
        x = torch.randn(batch, 3, resolution, resolution, device=device)
        t0 = time.perf_counter()
        with torch.no_grad():
            ref = model(x)
            out = converted(x)  # first call: algo='auto' decides per layer (measured once, cached)
        setup_s = time.perf_counter() - t0
        err = ((out - ref).norm() / ref.norm()).item()
        fns = {"original": lambda: model(x), "converted": lambda: converted(x)}
        with torch.no_grad():
            times = time_interleaved(fns, device, warmup=1, rounds=15, max_seconds=20.0)
        row = {"model": name, "batch": batch, "resolution": resolution, "rel_err": err,
               "same_top1": bool(torch.equal(out.argmax(1), ref.argmax(1))),
               "converted_layers": len(converted.fftconv_converted), "first_call_s": setup_s}
        for k, fn in fns.items():
            row[k] = {**times[k], "images_per_s": batch / (times[k]["median_ms"] / 1e3),
                      "peak_mib": _peak_of(fn, device)}
        row["speedup"] = times["original"]["median_ms"] / times["converted"]["median_ms"]
        row["converted_time_shares"] = time_shares(fns["converted"], device)
        # Amdahl: even an FFT layer that took no time would leave the rest of the converted net.
        rest = 1.0 - row["converted_time_shares"]["fft"]
        row["speedup_ceiling_if_fft_were_free"] = row["speedup"] / max(rest, 1e-9)
        rows.append(row)
    return rows


def models_markdown(rows: List[Dict]) -> str:
    lines = ["| model | batch | original img/s | converted img/s | speedup | FFT layers' share of converted | "
             "ceiling if FFT were free | original peak MiB | converted peak MiB | rel err | same top-1 |",
             "|" + "---|" * 11]
    for r in rows:
        sh = r.get("converted_time_shares", {})
        lines.append(f"| {r['model']} | {r['batch']} | {r['original']['images_per_s']:.2f} | "
                     f"{r['converted']['images_per_s']:.2f} | {r['speedup']:.2f}x | "
                     f"{100 * sh.get('fft', float('nan')):.0f} % (other convs "
                     f"{100 * sh.get('other convolutions', float('nan')):.0f} %) | "
                     f"{r.get('speedup_ceiling_if_fft_were_free', float('nan')):.2f}x | "
                     f"{r['original']['peak_mib']:.0f} | {r['converted']['peak_mib']:.0f} | "
                     f"{r['rel_err']:.1e} | {r['same_top1']} |")
    return "\n".join(lines)
