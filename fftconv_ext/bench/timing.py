"""Timing helpers: warm-up, repeats, medians, CUDA synchronisation."""
from __future__ import annotations

import random
import statistics
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

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


def time_interleaved(fns: Dict[str, Callable[[], object]], device: torch.device, warmup: int = 1,
                     rounds: int = 25, max_seconds: float = 1.0,
                     paired: Sequence[Tuple[str, str]] = (),
                     lockstep: bool = False) -> Dict[str, Dict[str, float]]:
    """Time several implementations of one problem in round-robin.

    Each round calls every implementation once, in a shuffled order, so a slow
    spell of a shared machine (or the cache state one call leaves to the next)
    hits all of them alike and their ratios stay meaningful. An
    implementation leaves the rotation once it has used max_seconds (keeping
    at least 3 samples), so slow baselines do not stall the run.

    paired=[(a, b), ...]: also the median over rounds of time(a) / time(b)
    measured in the same round (result[a]["paired_ratio_vs"][b]), a statistic
    that a slow spell of the machine affects much less than the ratio of the
    two medians.

    lockstep=True: no implementation leaves early; the rounds stop for all once
    one has used max_seconds (each keeping at least 3 samples), so every median
    covers the same rounds. Otherwise a fast implementation timed on after a
    slow one left could have its median from a quieter spell of the machine than
    the other's (seen: auto 3.2x "slower" than the path it ran, paired 1.02x).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    samples: Dict[str, list] = {name: [] for name in fns}
    by_round: Dict[str, Dict[int, float]] = {name: {} for name in fns}
    spent = {name: 0.0 for name in fns}
    order = random.Random(0)
    for rnd in range(rounds):
        active = [n for n in fns if len(samples[n]) < 3 or spent[n] < max_seconds]
        if lockstep and len(active) < len(fns) and all(len(samples[n]) >= 3 for n in fns):
            break
        if lockstep:
            active = list(fns)
        if not active:
            break
        order.shuffle(active)  # no implementation always runs right after the same other one
        for name in active:
            _sync(device)
            t0 = time.perf_counter()
            fns[name]()
            _sync(device)
            dt = time.perf_counter() - t0
            samples[name].append(dt * 1e3)
            by_round[name][rnd] = dt * 1e3
            spent[name] += dt
    out = {name: {"median_ms": statistics.median(t), "min_ms": min(t), "max_ms": max(t), "repeats": len(t)}
           for name, t in samples.items()}
    for a, b in paired:
        common = sorted(set(by_round.get(a, {})) & set(by_round.get(b, {})))
        if common:
            out[a].setdefault("paired_ratio_vs", {})[b] = statistics.median(
                by_round[a][r] / by_round[b][r] for r in common)
    return out


def with_backward(conv: Callable[..., torch.Tensor], x: torch.Tensor, w: torch.Tensor,
                  b: Optional[torch.Tensor]) -> Callable[[], object]:
    """A call of conv(x, w, b)'s forward and its input, weight and bias gradients through
    autograd (the backward a layer trains with), on leaf copies of the operands."""
    leaves = [t.detach().requires_grad_() for t in (x, w, b) if t is not None]
    xs, ws = leaves[0], leaves[1]
    bs = leaves[2] if b is not None else None
    gy = torch.randn_like(conv(x, w, b))

    def run():
        return torch.autograd.grad(conv(xs, ws, bs), leaves, gy)
    return run


# a path this much slower than the other is timed in the lockstep rounds only: auto is then timed
# again against the faster path alone (the slow path ends the rounds early, and a call after it
# finds the caches cold, which with few rounds falls on auto and the faster path unevenly)
SLOW_PATH_FACTOR = 3.0


def time_auto_against_paths(fns: Dict[str, Callable[[], object]], device: torch.device, rounds: int,
                            max_seconds: float, warmup: int = 1) -> Dict:
    """fns["auto"], fns["fft"] and fns["direct"] in lockstep rounds, auto paired with each path;
    where one path is over SLOW_PATH_FACTOR x the other, auto and the faster path again, alone.
    {"median_ms": {algo: ms}, "faster": path, "auto_over_faster", "paired" (auto / the faster
    path, same rounds), "paired_vs" ({path: paired ratio} of the lockstep rounds), "rounds"}."""
    t = time_interleaved(fns, device, warmup=warmup, rounds=rounds, max_seconds=max_seconds,
                         paired=[("auto", "fft"), ("auto", "direct")], lockstep=True)
    med = {a: t[a]["median_ms"] for a in fns}
    faster = "fft" if med["fft"] <= med["direct"] else "direct"
    slower = "direct" if faster == "fft" else "fft"
    paired_vs = dict(t["auto"]["paired_ratio_vs"])
    paired, n = paired_vs[faster], t["auto"]["repeats"]
    if med[slower] > SLOW_PATH_FACTOR * med[faster]:
        again = time_interleaved({"auto": fns["auto"], faster: fns[faster]}, device, warmup=0, rounds=rounds,
                                 max_seconds=max_seconds, paired=[("auto", faster)], lockstep=True)
        med["auto"], med[faster] = again["auto"]["median_ms"], again[faster]["median_ms"]
        paired, n = again["auto"]["paired_ratio_vs"][faster], again["auto"]["repeats"]
        paired_vs[faster] = paired
    return {"median_ms": med, "faster": faster, "auto_over_faster": med["auto"] / med[faster], "paired": paired,
            "paired_vs": paired_vs, "rounds": n}
