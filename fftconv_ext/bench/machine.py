"""What a run was measured on, and whether the machine was quiet while it ran.

A shared machine that gets busy during a run slows every implementation, but not alike: a
direct convolution whose threads meet at barriers loses more than an FFT pipeline, so ratios
taken in a busy spell are wrong, not just noisy. Every suite therefore records, at its start
and at its end, the load average and the time of a fixed probe workload, and flags the run
when either says that something else was running.
"""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time

import torch

# a run is flagged when, beyond its own threads, the load average shows more than this many
# runnable processes, or when the probe ran this much slower at one end than at the other
_BUSY_LOAD = 0.75
_PROBE_DRIFT = 1.25


# glibc serves a large buffer from fresh mmap'ed pages until its dynamic threshold has moved above
# that size, and on a VM touching fresh pages can make a direct convolution 4x slower; which of
# the two regimes a call lands in depends on what the process freed before. The harness fixes
# the thresholds, so that every run times the same regime: large buffers come from the heap and
# are reused, as in the steady state of a long-running process. `--glibc-defaults` opts out.
FIXED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}

# appended to the machine name of every result file: "-benchmark" for runs with
# fftconv_ext.backends.benchmark on (set_auto_mode)
NAME_SUFFIX = ""


def malloc_mode() -> str:
    return "fixed" if all(os.environ.get(k) == v for k, v in FIXED_MALLOC.items()) else "glibc defaults"


def restart_with_fixed_malloc(argv) -> None:
    """Replaces this process by the same benchmark command with glibc's thresholds fixed (glibc
    reads them at start-up only), unless they are fixed already or this is not Linux."""
    if sys.platform.startswith("linux") and malloc_mode() != "fixed":
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, "-m", "fftconv_ext.bench", *argv],
                  dict(os.environ, **FIXED_MALLOC))


def set_auto_mode(benchmark: bool) -> None:
    """algo='auto' as the run uses it: the cost model alone (default) or benchmark mode, whose
    result files are named <machine>-benchmark*."""
    global NAME_SUFFIX
    import fftconv_ext
    fftconv_ext.backends.benchmark = benchmark
    NAME_SUFFIX = "-benchmark" if benchmark else ""


def _benchmark_on() -> bool:
    import fftconv_ext
    return fftconv_ext.backends.benchmark


def machine_name(device: torch.device, threads: int) -> str:
    return _machine(device, threads) + NAME_SUFFIX


def _machine(device: torch.device, threads: int) -> str:
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
    # the vector ISA torch runs (AVX2, AVX512, ...): oneDNN's kernels, and the cost profile, differ by it
    isa = torch.backends.cpu.get_cpu_capability().lower()
    return f"{cpu}-{platform.machine()}-{isa}-{threads}t"


def probe_ms(device: torch.device) -> float:
    """Median of 15 float32 512 x 512 matrix products (ms): the same work in every run."""
    a = torch.randn(512, 512, device=device)
    times = []
    for _ in range(16):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        torch.mm(a, a)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times[1:])


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def run_meta(device: torch.device, threads: int, **extra) -> dict:
    """The run's description, with the machine's state at its start."""
    return {"machine": machine_name(device, threads), "device": str(device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "dtype": "float32",
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "malloc": malloc_mode(), "auto": "benchmark" if _benchmark_on() else "default",
            **extra, "load_at_start": _load(), "probe_ms_at_start": round(probe_ms(device), 3)}


def finish_meta(meta: dict, device: torch.device) -> dict:
    """Adds the state at the end and `quiet`: False (with the reason in `busy`) when the load
    average or the probe says that something else ran on the machine during the run."""
    meta["load_at_end"] = _load()
    meta["probe_ms_at_end"] = round(probe_ms(device), 3)
    reasons = []
    own = meta["threads"] if device.type == "cpu" else 1
    for when in ("start", "end"):
        load = meta[f"load_at_{when}"]
        if load is not None and load > own + _BUSY_LOAD:
            reasons.append(f"load average {load} at the {when} ({own} threads of our own)")
    a, b = meta["probe_ms_at_start"], meta["probe_ms_at_end"]
    if max(a, b) > _PROBE_DRIFT * min(a, b):
        reasons.append(f"probe {a} ms at the start, {b} ms at the end")
    meta["quiet"] = not reasons
    if reasons:
        meta["busy"] = "; ".join(reasons)
        print("warning: the machine was not quiet during this run (" + meta["busy"] + "): its ratios are not "
              "to be quoted; run it again on a quiet machine", flush=True)
    return meta
