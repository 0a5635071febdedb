"""algo="auto": choose between direct convolution (F.conv, i.e. cuDNN/oneDNN)
and the FFT operator, per problem, by measurement.

The first call of a problem (shapes, arguments, dtype, device, thread count)
times both algorithms once on the real inputs, like ``cudnn.benchmark``, and
remembers the faster one in memory and on disk
(``fftconv_ext.backends.cache_dir``/``algo.json``, default ``~/.cache/fftconv_ext``), so later
calls and later processes pay nothing. Problems where one side does over 30x
the arithmetic of the other, and kernels of a single tap (1x1), are decided
without measuring. A measured choice
is measured once more at the problem's 32nd call in each process (a timing
taken while a shared machine was busy can be wrong by several times), and a
third measurement settles a disagreement. Under
``torch.compile`` tracing (no real data to time) the cached choice is used,
else the arithmetic estimate.
"""
from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import threading
import time
from typing import Callable, Dict, Optional

import torch

from . import backends
from ._shapes import output_length

ALGOS = ("auto", "fft", "direct")
_CLEAR_RATIO = 30.0

_lock = threading.Lock()
_memory: Dict[str, str] = {}      # problem key (str) -> choice, mirrors the disk file
_fast: Dict[tuple, str] = {}      # the same, keyed by a tuple: the per-call lookup
decided_calls: Dict[tuple, Callable] = {}  # functional.conv1d/conv2d calls whose path is chosen (see _call_key there)
_loaded_from: Optional[str] = None


def cache_path() -> str:
    return os.path.join(backends.cache_dir, "algo.json")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}"


_build: Optional[str] = None


def build_id() -> str:
    """Identity of the compiled operator (size and modification time of its
    library): a rebuilt operator may be faster or slower, so choices measured
    with another build are not reused."""
    global _build
    if _build is None:
        from . import _C
        try:
            st = os.stat(_C.__file__)
            _build = f"{st.st_size}-{st.st_mtime_ns}"
        except (OSError, AttributeError):
            _build = "unknown"
    return _build


def settings_version() -> int:
    """Bumped by every change of fftconv_ext.backends: the in-memory keys of
    decided calls hold it, so a changed setting is measured anew."""
    return backends._version


def problem_key(device: torch.device, dtype: torch.dtype, x_shape: tuple, w_shape: tuple, args: tuple) -> str:
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    return "|".join(map(str, (_device_name(device), torch.__version__, build_id(), backends.pipeline_key(), threads,
                              dtype, x_shape, w_shape, args)))


def _load() -> None:
    global _loaded_from
    path = cache_path()
    if _loaded_from == path:
        return
    _loaded_from = path
    try:
        with open(path) as f:
            data = json.load(f)
        _memory.update({k: v for k, v in data.items() if v in ("fft", "direct")})
    except (OSError, ValueError):
        pass


def _store(key: str, choice: str) -> None:
    _memory[key] = choice
    path = cache_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = {}
        data[key] = choice
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=0)
        os.replace(tmp, path)  # atomic: concurrent processes never read half a file
    except OSError:
        pass  # read-only home: the choice lives in memory for this process


def arithmetic_ratio(x_shape, w_shape, out_spatial, fft_shape) -> float:
    """Direct multiply-adds over an estimate of the FFT path's work (> 1: FFT cheaper)."""
    n, c_in = x_shape[0], x_shape[1]
    c_out, cpg = w_shape[0], w_shape[1]
    taps = math.prod(w_shape[2:])
    direct = n * c_out * cpg * taps * math.prod(out_spatial)
    points = math.prod(fft_shape)
    fft = n * (c_in + c_out) * 2.5 * points * math.log2(max(points, 2)) + n * c_out * cpg * points * 2
    return direct / max(fft, 1.0)


def _ratio(x_shape, w_shape, geometry) -> float:
    """geometry = (spatial, kernel, pads, stride, dilation), one entry per spatial axis."""
    from . import _C
    spatial, kernel, pads, stride, dilation = geometry
    if math.prod(kernel) == 1:
        # one tap: the FFT path's spectral product alone does at least the direct
        # convolution's multiply-adds, before any transform; nothing to measure
        return 0.0
    lead = 2 - len(spatial)  # 1-D problems are height-1 2-D ones
    fft_shape = _C.fft_shape([1, 1] + [1] * lead + list(spatial), [1, 1] + [1] * lead + list(kernel),
                             [1] * lead + list(stride), [p for lr in [(0, 0)] * lead + list(pads) for p in lr],
                             [1] * lead + list(dilation), 1, False)
    out_spatial = [output_length(n, k, pl, pr, s, d)
                   for n, (pl, pr), k, d, s in zip(spatial, pads, kernel, dilation, stride)]
    return arithmetic_ratio(x_shape, w_shape, out_spatial, fft_shape)


@torch.compiler.assume_constant_result
def _static_choice(device: torch.device, dtype: torch.dtype, x_shape: tuple, w_shape: tuple, args: tuple,
                   geometry: tuple) -> str:
    """The choice while torch.compile traces: the remembered one, else the estimate."""
    key = problem_key(device, dtype, x_shape, w_shape, args)
    with _lock:
        _load()
        hit = _memory.get(key)
    if hit is not None:
        return hit
    return "fft" if _ratio(x_shape, w_shape, geometry) >= 1.0 else "direct"


def _under_dispatch_mode() -> bool:
    """Whether a TorchDispatchMode (FlopCounterMode, a debug mode) sees every op: timings
    there would measure the mode and add the measurement's calls to what it records."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode
    return _get_current_dispatch_mode() is not None


def _is_tracing(t: torch.Tensor) -> bool:
    if torch.compiler.is_compiling():
        return True
    return t.device.type == "meta" or type(t).__name__ in ("FakeTensor", "FunctionalTensor")


def _time_once(fn: Callable[[], torch.Tensor], device: torch.device) -> float:
    """Seconds of one call of fn (synchronised on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


# Rounds of (fft, direct) timings, in alternating order; a near tie (fastest
# samples within 25 %) gets more rounds before the choice is made: a single
# timing of each had picked a path 10 % slower on a shared machine.
_ROUNDS, _TIE_ROUNDS, _TIE = 3, 8, 1.25
# Warm-up calls in which one path is this many times slower, and took over 50 ms, decide at once: no
# round reverses such a gap, and the slow path's extra calls (a direct backward with
# a large kernel takes seconds on the CPU) are what made a first training step cost
# many plain ones.
_LOPSIDED, _LOPSIDED_SECONDS = 5.0, 0.05


def _measure(run_fft: Callable[[], torch.Tensor], run_direct: Callable[[], torch.Tensor],
             device: torch.device) -> str:
    warm_fft = _time_once(run_fft, device)  # warm-up (plans, caches, first-touch memory)
    warm_direct = _time_once(run_direct, device)
    # only where the slow side is expensive: a sub-millisecond first call is mostly one-time set-up
    # (a oneDNN primitive, MKL's tables) and had picked the wrong path for 3x3 layers
    if max(warm_fft, warm_direct) > _LOPSIDED_SECONDS and \
            not 1 / _LOPSIDED < (warm_fft + 1e-9) / (warm_direct + 1e-9) < _LOPSIDED:
        return "fft" if warm_fft < warm_direct else "direct"
    times = {"fft": [], "direct": []}

    def one_round(r: int) -> None:
        order = ("direct", "fft") if r % 2 else ("fft", "direct")
        for name in order:
            times[name].append(_time_once(run_fft if name == "fft" else run_direct, device))

    def ratio() -> float:
        # the fastest sample of each: this shared machine switches between regimes that
        # slow one kernel several times more than another for a dozen calls (seen: a
        # direct 3x3 depthwise call at 2 ms and at 15 ms, minutes apart), so neither one
        # sample nor same-round ratios are stable; the least disturbed call of each is
        return (min(times["fft"]) + 1e-9) / (min(times["direct"]) + 1e-9)

    for r in range(_ROUNDS):
        one_round(r)
    if 1 / _TIE < ratio() < _TIE:
        for r in range(_ROUNDS, _ROUNDS + _TIE_ROUNDS):
            one_round(r)
    return "fft" if ratio() <= 1.0 else "direct"


def _fast_key(x: torch.Tensor, w_shape: tuple, args: tuple) -> tuple:
    return (x.device, x.dtype, tuple(x.shape), w_shape, args, torch.get_num_threads(), backends._version)


def choose(x: torch.Tensor, w: torch.Tensor, args: tuple, geometry: tuple,
           run_fft: Callable[[], torch.Tensor], run_direct: Callable[[], torch.Tensor]) -> str:
    """'fft' or 'direct' for this problem (see the module docstring)."""
    x_shape, w_shape = tuple(x.shape), tuple(w.shape)
    if x.device.type == "meta":
        return "fft"  # shapes only: the op's fake kernel keeps the memory format (F.conv2d's meta one does not)
    if _is_tracing(x) or _under_dispatch_mode():
        return _static_choice(x.device, x.dtype, x_shape, w_shape, args, geometry)
    fast_key = _fast_key(x, w_shape, args)
    hit = _fast.get(fast_key)
    if hit is not None:
        return hit
    key = problem_key(x.device, x.dtype, x_shape, w_shape, args)
    with _lock:
        _load()
        hit = _memory.get(key)
    if hit is None:
        ratio = _ratio(x_shape, w_shape, geometry)
        if ratio >= _CLEAR_RATIO or ratio <= 1.0 / _CLEAR_RATIO:
            hit = "fft" if ratio >= 1.0 else "direct"
        else:
            with torch.no_grad():
                hit = _measure(run_fft, run_direct, x.device)
            with _lock:
                _store(key, hit)
    _fast[fast_key] = hit
    return hit


def agrees(x: torch.Tensor, w: torch.Tensor, args: tuple, forward: str) -> bool:
    """Whether this process already knows that the input and weight gradients of a problem
    take the forward's path: a training call can then take that path whole (one autograd
    node, and a decided call), without the per-direction machinery."""
    w_shape = tuple(w.shape)
    return all(_fast.get(_fast_key(x, w_shape, args + (d,))) == forward for d in ("grad_input", "grad_weight"))


# The call at which a measured choice is measured again (per process; see the module docstring).
RECHECK_AT = 32


def measured(x_shape: tuple, w_shape: tuple, geometry: tuple) -> bool:
    """Whether choose() decides this problem by measurement (not by arithmetic alone)."""
    ratio = _ratio(x_shape, w_shape, geometry)
    return 1.0 / _CLEAR_RATIO < ratio < _CLEAR_RATIO


def recheck(x: torch.Tensor, w: torch.Tensor, args: tuple, first: str,
            run_fft: Callable[[], torch.Tensor], run_direct: Callable[[], torch.Tensor]) -> str:
    """The choice after measuring once more: `first` if the new measurement agrees, else
    what a third one says. Remembered in memory and on disk like choose()'s."""
    with torch.no_grad():
        second = _measure(run_fft, run_direct, x.device)
        final = first if second == first else _measure(run_fft, run_direct, x.device)
    key = problem_key(x.device, x.dtype, tuple(x.shape), tuple(w.shape), args)
    with _lock:
        _store(key, final)
    _fast[_fast_key(x, tuple(w.shape), args)] = final
    return final


def clear_memory() -> None:
    """Forget the in-memory choices (the disk file stays); mostly for tests."""
    global _loaded_from
    with _lock:
        _memory.clear()
        _fast.clear()
        decided_calls.clear()
        _loaded_from = None
