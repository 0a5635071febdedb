"""Timing of the candidates in benchmark mode: one warm-up call each, then the median of a
few calls in rotating order, synchronised on CUDA."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict

import torch


# Timed calls per candidate after its warm-up call; the median decides. Candidates alternate
# (rotating order), so a slow spell of the machine falls on all of them alike.
ROUNDS = 5


def time_once(fn: Callable[[], torch.Tensor], device: torch.device) -> float:
    """Seconds of one call of fn (synchronised on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def measure_many(runs: Dict[str, Callable[[], torch.Tensor]], device: torch.device) -> str:
    """The name of the fastest run: one warm-up call each (plans, caches, first-touch memory),
    then ROUNDS rounds in rotating order; the smallest median wins."""
    names = list(runs)
    if len(names) == 1:
        return names[0]
    for name in names:
        time_once(runs[name], device)
    times: Dict[str, list] = {n: [] for n in names}
    for r in range(ROUNDS):
        for i in range(len(names)):
            name = names[(i + r) % len(names)]
            times[name].append(time_once(runs[name], device))
    return min(names, key=lambda n: statistics.median(times[n]))
