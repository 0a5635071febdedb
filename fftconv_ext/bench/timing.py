"""Timing helpers: warm-up, repeats, medians, CUDA synchronisation."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, warmup: int = 2, repeats: int = 7,
              max_seconds: float = 5.0) -> Dict[str, float]:
    """Median and spread of fn() in milliseconds, after warm-up.

    On CUDA each repeat is bracketed by synchronisations. Stops early (with
    at least 3 repeats) once max_seconds are spent, so slow baselines do not
    stall a sweep.
    """
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    start = time.perf_counter()
    for i in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
        if i >= 2 and time.perf_counter() - start > max_seconds:
            break
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "repeats": len(times)}
