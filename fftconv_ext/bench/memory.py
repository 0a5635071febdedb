"""Peak extra memory of one forward call: on CPU from the allocation events
torch.profiler records for PyTorch's CPU allocator (the running sum of
allocations and frees, its maximum), on CUDA from max_memory_allocated; minus
the output itself. Memory an FFT library allocates on its own (MKL's
internal buffers) is not included; our cuFFT work areas are PyTorch
allocations and are.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Dict, Iterator

import torch
from torch.profiler import ProfilerActivity, profile


@contextlib.contextmanager
def quiet_profiler() -> Iterator[None]:
    """torch.profiler's native layer (kineto) writes status lines ("profiler_start",
    "gpuGetDeviceCount failed") straight to file descriptor 2, between the benchmark's
    own output: silence that descriptor for the block (Python's sys.stderr is flushed first)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_allocated_bytes(fn: Callable[[], torch.Tensor], device: torch.device) -> Dict[str, float]:
    """{'peak': max bytes live during fn beyond those live before, 'kept': bytes
    still live after it (the output and whatever the call cached), 'out': output bytes}."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        out = fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        kept = torch.cuda.memory_allocated(device) - before
        return {"peak": float(peak), "kept": float(kept), "out": float(out.numel() * out.element_size())}
    with quiet_profiler(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return {"peak": float(peak), "kept": float(live), "out": float(out.numel() * out.element_size())}


def forward_memory(x: torch.Tensor, w: torch.Tensor, pad: int, groups: int) -> Dict[str, float]:
    """Peak extra memory (bytes, and as a multiple of the output) of fftconv_ext's
    FFT forward: on a first call (kernel spectrum computed and cached; how much
    of it the cache keeps is reported too), on a repeated call (spectrum from
    the cache), and with the cache off (set_cache_limit(0): each group block's
    kernel spectra made beside its chunk, nothing kept)."""
    import fftconv_ext
    from fftconv_ext import _C
    limit = fftconv_ext.cache_info()["limit"]
    fftconv_ext.clear_caches()

    def call():
        with torch.no_grad():
            return fftconv_ext.conv2d(x, w, padding=pad, groups=groups, algo="fft")
    try:  # the spectrum cache's limit only (-1: the cuFFT plan cache keeps its limit)
        _C.set_cache_limits(max(limit, 1), -1)
        first = peak_allocated_bytes(call, x.device)
        again = peak_allocated_bytes(call, x.device)
        _C.set_cache_limits(0, -1)
        off = peak_allocated_bytes(call, x.device)
    finally:
        _C.set_cache_limits(limit, -1)
    out = first["out"]
    return {"output_bytes": out,
            "first_call_extra_bytes": first["peak"] - out, "first_call_extra_over_output": (first["peak"] - out) / out,
            "first_call_cache_entry_bytes": first["kept"] - out,
            "first_call_transient_over_output": (first["peak"] - first["kept"]) / out,
            "cached_extra_bytes": again["peak"] - out, "cached_extra_over_output": (again["peak"] - out) / out,
            "cache_off_extra_bytes": off["peak"] - out, "cache_off_extra_over_output": (off["peak"] - out) / out}
