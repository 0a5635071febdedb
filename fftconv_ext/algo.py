"""algo="auto": choose between direct convolution (F.conv, i.e. cuDNN/oneDNN)
and the FFT operator, per problem, by measurement.

The first call of a problem (shapes, arguments, dtype, device, thread count)
times both algorithms once on the real inputs, like ``cudnn.benchmark``, and
remembers the faster one in memory and on disk
(``fftconv_ext.backends.cache_dir``/``algo.json``, default ``~/.cache/fftconv_ext``), so later
calls and later processes pay nothing. Problems where the FFT path does over
4x the arithmetic of direct, or (on the CPU) direct over 4x that of the FFT
path (30x elsewhere), and kernels of a single tap (1x1), are decided without
measuring: no measurement has reversed such a gap, and on the CPU measuring a
direct backward with a large kernel costs seconds. Timing goes on until each
path's fastest call settles; measured paths within 15 % of each other are a
tie, settled by the arithmetic estimate, and overruling the estimate takes two
measurements that agree, so fresh processes make the same choice. The first
measurement on the CPU first moves glibc's mmap threshold to where a process
working with large tensors settles (docs/design.md §15). On the CPU a measured
choice is measured once more at the problem's 32nd call in each process (a timing
taken while a shared machine was busy can be wrong by several times), and a
third measurement settles a disagreement. Under
``torch.compile`` tracing (no real data to time) the cached choice is used,
else the arithmetic estimate.

On CUDA the FFT side is several pipelines (docs/design.md §17: row-pruned,
whole-plane, the fused small-plane kernel). Only those that have passed the GPU
check are candidates by default (``fftconv_ext.backends.verified_on_gpu()``:
today the row-pruned one alone, so nothing is timed among pipelines); the others
join with ``fftconv_ext.backends.cuda_unverified = True``, and only where they
run the problem themselves. Then the first call times each candidate beside
cuDNN and keeps the fastest, recorded in the operator per problem and direction,
and on disk as ``fft:<pipeline>``; ``algo="fft"`` chooses among the pipelines the
same way. An unverified candidate is taken only after its output on the
measuring call matched cuDNN's (computed without TF32); a mismatch, or a
candidate that raises (a cuFFT plan that cannot be allocated, say), disqualifies
it for the process, with one warning. Where both gradients chose the fused
kernel, its joint pass is compared with them before it is used.
"""
from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from typing import Callable, Dict, Optional, Sequence

import torch

from . import backends
from ._shapes import output_length

ALGOS = ("auto", "fft", "direct")
# Arithmetic ratios (direct over FFT work) past which no measurement is made: the FFT
# path at 4x direct's work never won a measurement (3x3 layers had flipped between
# processes on a shared machine's timing regimes); direct at 4x the FFT path's work
# never won on the CPU, where measuring it costs seconds per call (a 31x31 depthwise
# backward); elsewhere cuDNN's own algorithms (Winograd, its FFT) keep it measured.
_CLEAR_DIRECT = 4.0
_CLEAR_FFT = {"cpu": 4.0}
_CLEAR_FFT_DEFAULT = 30.0
# Measured fastest calls within this factor are a tie: either path is close to the
# best, and the arithmetic estimate decides, so that fresh processes choose alike.
_NEAR = 1.15

_lock = threading.Lock()
_memory: Dict[str, str] = {}      # problem key (str) -> choice, mirrors the disk file
_fast: Dict[tuple, str] = {}      # the same, keyed by a tuple: the per-call lookup
_pipeline_of: Dict[tuple, str] = {}  # fast key -> the CUDA pipeline recorded for it
_preferred: Dict[tuple, str] = {}  # fast key -> the arithmetic estimate's choice (a tie's tie-breaker)
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
        _memory.update({k: v for k, v in data.items() if isinstance(v, str) and v.split(":")[0] in ("fft", "direct")})
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


def clear_choice(ratio: float, device_type: str) -> Optional[str]:
    """The choice the arithmetic ratio settles without measuring, or None."""
    if ratio <= 1.0 / _CLEAR_DIRECT:
        return "direct"
    if ratio >= _CLEAR_FFT.get(device_type, _CLEAR_FFT_DEFAULT):
        return "fft"
    return None


def _ratio(x_shape, w_shape, geometry) -> float:
    """geometry = (spatial, kernel, pads, stride, dilation), one entry per spatial axis."""
    from . import _C
    spatial, kernel, pads, stride, dilation = geometry
    if math.prod(kernel) == 1:
        # one tap: the FFT path's spectral product alone does at least the direct
        # convolution's multiply-adds, before any transform; nothing to measure
        return 0.0
    out_spatial = [output_length(n, k, pl, pr, s, d)
                   for n, (pl, pr), k, d, s in zip(spatial, pads, kernel, dilation, stride)]
    if len(spatial) == 3:  # the 2-D problem the operator runs (depth_fold.py)
        from .depth_fold import DepthFold
        fold = DepthFold(spatial, kernel, pads, stride, dilation)
        p = fold.padding4
        fft_shape = _C.fft_shape([1, 1, *fold.folded_spatial], [1, 1, *fold.folded_kernel], fold.stride2, p,
                                 fold.dilation2, 1, False)
        return arithmetic_ratio(x_shape, w_shape, out_spatial, fft_shape)
    lead = 2 - len(spatial)  # 1-D problems are height-1 2-D ones
    fft_shape = _C.fft_shape([1, 1] + [1] * lead + list(spatial), [1, 1] + [1] * lead + list(kernel),
                             [1] * lead + list(stride), [p for lr in [(0, 0)] * lead + list(pads) for p in lr],
                             [1] * lead + list(dilation), 1, False)
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
        return hit.split(":")[0]
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


# Rounds of (fft, direct) timings, in alternating order. Measuring goes on until the
# fastest call of each path has settled (not improved by over _SETTLE in the last
# _SETTLE_ROUNDS rounds): the first calls of a path can run at several times its
# steady cost (first-touch pages of fresh buffers, a library's set-up), and a choice
# made on them had flipped between fresh processes. A near tie (fastest samples
# within 25 %) gets at least _ROUNDS + _TIE_ROUNDS rounds: a single timing of each had
# picked a path 10 % slower on a shared machine. _MAX_ROUNDS and _BUDGET_SECONDS bound
# the cost of a path that never settles.
_ROUNDS, _TIE_ROUNDS, _TIE = 3, 8, 1.25
_SETTLE, _SETTLE_ROUNDS, _MAX_ROUNDS, _BUDGET_SECONDS = 0.05, 2, 24, 1.0
# A measurement that overrules the arithmetic estimate by less than this factor is
# taken again, and stands only if the second agrees (see _measure).
_CONFIRM_BELOW = 1.5
# Warm-up calls in which one path is this many times slower, and took over 20 ms, decide at once: no
# round reverses such a gap, and the slow path's extra calls (a direct backward with
# a large kernel takes seconds on the CPU) are what made a first training step cost
# many plain ones.
_LOPSIDED, _LOPSIDED_SECONDS, _LOPSIDED_AGAIN_SECONDS = 5.0, 0.02, 0.002


def _lopsided(t_fft: float, t_direct: float) -> bool:
    return not 1 / _LOPSIDED < (t_fft + 1e-9) / (t_direct + 1e-9) < _LOPSIDED


def _settled(samples: Sequence[float]) -> bool:
    """Whether the fastest of these samples (one per round) was already within _SETTLE of
    itself _SETTLE_ROUNDS rounds ago."""
    if len(samples) <= _SETTLE_ROUNDS:
        return False
    return min(samples[:-_SETTLE_ROUNDS]) <= min(samples) * (1.0 + _SETTLE)


# glibc serves an allocation at or above its mmap threshold with fresh pages, which fault on
# first touch (several ms per call for a 12 MB output on a VM), and raises the threshold
# whenever it frees a larger such block (up to 32 MiB), which a process working with large
# tensors does early and for good. A fresh process measuring before that happened timed
# some paths at 2-3x their cost in the loop that follows, and fresh processes disagreed.
# So before its first measurement on the CPU, auto frees one block just under the ceiling,
# as such a process would: the threshold (only ever raised) is then where it settles anyway.
_GLIBC_MMAP_CEILING = 32 * 1024 * 1024
_allocator_settled = False


def _settle_allocator() -> None:
    global _allocator_settled
    if _allocator_settled:
        return
    _allocator_settled = True
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        block = torch.empty(_GLIBC_MMAP_CEILING - 64 * 1024, dtype=torch.uint8)
        del block


def _measure(run_fft: Callable[[], torch.Tensor], run_direct: Callable[[], torch.Tensor],
             device: torch.device, prefer: Optional[str] = None) -> str:
    """'fft' or 'direct' by timing both until their fastest calls settle; `prefer` (the
    arithmetic estimate's choice) settles a tie (fastest calls within _NEAR of each other)."""
    if device.type == "cpu":
        _settle_allocator()
    warm_fft = _time_once(run_fft, device)  # warm-up (plans, caches, first-touch memory)
    warm_direct = _time_once(run_direct, device)
    # only where the slow side is expensive: a sub-millisecond first call is mostly one-time set-up
    # (a oneDNN primitive, MKL's tables) and had picked the wrong path for 3x3 layers
    if _lopsided(warm_fft, warm_direct):
        if max(warm_fft, warm_direct) > _LOPSIDED_SECONDS:
            return "fft" if warm_fft < warm_direct else "direct"
        if max(warm_fft, warm_direct) > _LOPSIDED_AGAIN_SECONDS:
            # a few ms: one more call of each, past one-time set-up, decides if the gap holds
            # (rounds of a 15 ms direct call against a 1 ms FFT one had cost a first
            # training step 50 plain ones)
            warm_fft = min(warm_fft, _time_once(run_fft, device))
            warm_direct = min(warm_direct, _time_once(run_direct, device))
            if _lopsided(warm_fft, warm_direct):
                return "fft" if warm_fft < warm_direct else "direct"
    verdict, ratio = _timed_verdict(run_fft, run_direct, device, prefer)
    if prefer is not None and verdict != prefer and max(ratio, 1 / ratio) < _CONFIRM_BELOW:
        # overruling the arithmetic estimate by a modest margin takes two measurements
        # that agree: one taken in a slow spell of the preferred path had flipped a near
        # tie in one fresh process of five
        verdict, _ = _timed_verdict(run_fft, run_direct, device, prefer)
    return verdict


def _timed_verdict(run_fft: Callable[[], torch.Tensor], run_direct: Callable[[], torch.Tensor],
                   device: torch.device, prefer: Optional[str]) -> tuple:
    """One measurement of _measure: rounds until the fastest calls settle, then the verdict
    and the ratio (fft's fastest call over direct's)."""
    times = {"fft": [], "direct": []}

    def ratio() -> float:
        # the fastest sample of each: this shared machine switches between regimes that
        # slow one kernel several times more than another for a dozen calls (seen: a
        # direct 3x3 depthwise call at 2 ms and at 15 ms, minutes apart), so neither one
        # sample nor same-round ratios are stable; the least disturbed call of each is
        return (min(times["fft"]) + 1e-9) / (min(times["direct"]) + 1e-9)

    spent = 0.0
    for r in range(_MAX_ROUNDS):
        order = ("direct", "fft") if r % 2 else ("fft", "direct")
        for name in order:
            t = _time_once(run_fft if name == "fft" else run_direct, device)
            times[name].append(t)
            spent += t
        done = r + 1
        if done < _ROUNDS:
            continue
        tie = 1 / _TIE < ratio() < _TIE
        if (not tie or done >= _ROUNDS + _TIE_ROUNDS) and _settled(times["fft"]) and _settled(times["direct"]):
            break
        if spent > _BUDGET_SECONDS and not (tie and done < _ROUNDS + _TIE_ROUNDS):
            break
    r = ratio()
    if prefer is not None and 1 / _NEAR < r < _NEAR:
        return prefer, r
    return ("fft" if r <= 1.0 else "direct"), r


# ---- CUDA: the FFT pipelines (docs/design.md §17) ----------------------------

PIPELINES = ("rows", "planes", "fused")
# Directions of the operator's record (pipeline_choice.h): 3 is both gradients in one pass.
FORWARD, GRAD_INPUT, GRAD_WEIGHT, BACKWARD = 0, 1, 2, 3
_disqualified: set = set()   # GPU components whose output disagreed or that failed in this process


class PipelineTarget:
    """Where algo records a CUDA pipeline choice for one problem and direction: `record(name)`
    tells the operator, `applies(name)` says whether that pipeline runs the problem itself (one
    that would hand it to the row-pruned pipeline is no candidate: it would time the same code)."""

    def __init__(self, record: Callable[[str], None], applies: Optional[Callable[[str], bool]] = None,
                 direction: int = FORWARD):
        self.record, self.direction = record, direction
        self.applies = applies if applies is not None else (lambda name: True)


def component(pipeline: str, direction: int = FORWARD) -> str:
    """The gated GPU component (backends.verified_on_gpu()) that runs `pipeline` in `direction`."""
    if pipeline == "fused":
        return {GRAD_WEIGHT: "fused_weight_gradient", BACKWARD: "fused_joint_backward"}.get(direction, "fused")
    return pipeline


def verified_components() -> frozenset:
    """The GPU components that have passed the GPU check (one table in the operator's source)."""
    return frozenset(n for n, v in backends.verified_on_gpu().items() if v)


def verified_pipelines() -> frozenset:
    """The pipelines whose forward has passed the GPU check."""
    return frozenset(p for p in PIPELINES if component(p) in verified_components())


def _may_run(name: str) -> bool:
    """A component may run: verified or opted in (backends.cuda_unverified), not disqualified."""
    from . import _C
    return name not in _disqualified and bool(_C.gpu_component_enabled(name))


def _disqualify(name: str) -> None:
    from . import _C
    _disqualified.add(name)
    _C.disqualify_gpu_component(name)


def candidate_pipelines(target: PipelineTarget) -> tuple:
    """The FFT pipelines measured for a CUDA problem: the row-pruned one, which takes every
    problem, and each other one whose component may run and that runs the problem itself."""
    return tuple(p for p in PIPELINES
                 if p == "rows" or (_may_run(component(p, target.direction)) and target.applies(p)))


def _pipelines_for(device: torch.device, target: PipelineTarget) -> tuple:
    """None off CUDA (the CPU driver picks its own pipeline)."""
    from . import _C
    if device.type != "cuda" or not _C.built_with_cuda():
        return ()
    return candidate_pipelines(target)


@contextmanager
def forced_pipeline(name: str):
    """Run the operator's CUDA calls on the calling thread with pipeline `name`."""
    from . import _C
    previous = _C.force_pipeline(name)
    try:
        yield
    finally:
        _C.force_pipeline(previous)


@contextmanager
def exact_direct():
    """cuDNN without TF32, for the reference a pipeline's output is compared with: a dense
    float32 layer in TF32 is off by about 1e-3, which had disqualified correct pipelines."""
    cudnn = torch.backends.cudnn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the allow_tf32 switch is deprecated in favour of fp32_precision
        old = cudnn.allow_tf32
        cudnn.allow_tf32 = False
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cudnn.allow_tf32 = old


def _matches(out: torch.Tensor, reference: torch.Tensor) -> bool:
    """out agrees with the direct convolution within the FFT's floating-point error."""
    if out.shape != reference.shape:
        return False
    if out.dtype == torch.float64 and reference.dtype == torch.float64:
        tol = 1e-8
    elif out.dtype in (torch.float16, torch.bfloat16) or reference.dtype in (torch.float16, torch.bfloat16):
        tol = 2e-2  # both sides rounded to 8 or 11 bits
    else:
        tol = 1e-3
    out, reference = out.double(), reference.double()
    if not bool(torch.isfinite(out).all()):
        return False
    scale = float(reference.abs().max()) if reference.numel() else 0.0
    return float((out - reference).abs().max()) <= tol * scale + 1e-6 if out.numel() else True


def _measure_many(runs: Dict[str, Callable[[], torch.Tensor]], device: torch.device) -> str:
    """The name of the fastest of several runs, by each one's fastest call over rounds in
    rotating order (one warm-up call each first); a near tie of the two fastest gets more rounds."""
    names = list(runs)
    if len(names) == 1:
        return names[0]
    for name in names:
        _time_once(runs[name], device)
    times: Dict[str, list] = {n: [] for n in names}

    def rounds(start: int, count: int) -> None:
        for r in range(start, start + count):
            for i in range(len(names)):
                name = names[(i + r) % len(names)]
                times[name].append(_time_once(runs[name], device))

    rounds(0, _ROUNDS)
    best = sorted(names, key=lambda n: min(times[n]))
    if (min(times[best[1]]) + 1e-9) / (min(times[best[0]]) + 1e-9) < _TIE:
        rounds(_ROUNDS, _TIE_ROUNDS)
    return min(names, key=lambda n: min(times[n]))


def _measure_pipelines(run_fft: Callable[[], torch.Tensor], run_direct: Callable[[], torch.Tensor],
                       pipelines: Sequence[str], device: torch.device, with_direct: bool, problem: str,
                       direction: int = FORWARD) -> str:
    """'direct' or 'fft:<pipeline>': the fastest candidate. Each candidate runs once first: one
    that raises is no candidate (an unverified one is disqualified for the process, with one
    warning), and an unverified one must also match the direct convolution (without TF32)."""
    verified = verified_components()
    runs: Dict[str, Callable[[], torch.Tensor]] = {"direct": run_direct} if with_direct else {}
    reference = None
    for name in pipelines:
        part = component(name, direction)
        if part in _disqualified:
            continue

        def run(name=name):
            with forced_pipeline(name):
                return run_fft()
        try:
            out = run()
        except RuntimeError as e:  # torch.OutOfMemoryError too
            if part not in verified:
                _disqualify(part)
            warnings.warn(f"fftconv_ext: the CUDA pipeline '{name}' failed on {problem} ({str(e).splitlines()[0]}); "
                          + ("it is not used again in this process" if part not in verified else
                             "it is not a candidate for this problem"), RuntimeWarning, stacklevel=3)
            continue
        if part not in verified:
            if reference is None:
                with exact_direct():
                    reference = run_direct()
            if not _matches(out, reference):
                _disqualify(part)
                warnings.warn(f"fftconv_ext: the CUDA pipeline '{name}' (not yet verified on a GPU) disagreed with "
                              f"the direct convolution on {problem}; it is not used again in this process",
                              RuntimeWarning, stacklevel=3)
                continue
        del out
        runs["fft:" + name] = run
    if not runs:  # no candidate left: the default pipeline, the one that has run on a GPU
        return "fft:default"
    return _measure_many(runs, device)


def _fast_key(x: torch.Tensor, w_shape: tuple, args: tuple) -> tuple:
    return (x.device, x.dtype, tuple(x.shape), w_shape, args, torch.get_num_threads(), backends._version)


def choose(x: torch.Tensor, w: torch.Tensor, args: tuple, geometry: tuple,
           run_fft: Callable[[], torch.Tensor], run_direct: Callable[[], torch.Tensor],
           target: Optional[PipelineTarget] = None, with_direct: bool = True) -> str:
    """'fft' or 'direct' for this problem (see the module docstring). On CUDA, with a
    PipelineTarget given, the FFT pipelines are candidates too, and the target records the
    chosen one in the operator; with_direct=False (algo='fft') chooses among them alone."""
    x_shape, w_shape = tuple(x.shape), tuple(w.shape)
    if not with_direct:
        args = args + ("fft",)
    if x.device.type == "meta":
        return "fft"  # shapes only: the op's fake kernel keeps the memory format (F.conv2d's meta one does not)
    if _is_tracing(x) or _under_dispatch_mode():
        return _static_choice(x.device, x.dtype, x_shape, w_shape, args, geometry) if with_direct else "fft"
    fast_key = _fast_key(x, w_shape, args)
    hit = _fast.get(fast_key)
    if hit is not None:
        return hit
    key = problem_key(x.device, x.dtype, x_shape, w_shape, args)
    with _lock:
        _load()
        hit = _memory.get(key)
    ratio = _ratio(x_shape, w_shape, geometry)
    _preferred[fast_key] = "fft" if ratio >= 1.0 else "direct"
    pipelines = _pipelines_for(x.device, target) if target is not None else ()
    remembered = hit.partition(":")[2] if hit is not None else ""
    if remembered and remembered not in ("default", "rows") and (
            target is None or not _may_run(component(remembered, target.direction))):
        hit = None  # remembered from another process or setting: measured again without it
    if hit is None:
        clear = clear_choice(ratio, x.device.type) if with_direct else "fft"
        if pipelines and clear != "direct":
            problem = f"input {x_shape}, weight {w_shape}, {args}"
            with torch.no_grad():
                hit = _measure_pipelines(run_fft, run_direct, pipelines, x.device, with_direct and clear is None,
                                         problem, target.direction)
        elif clear is not None:
            hit = clear
        else:
            with torch.no_grad():
                hit = _measure(run_fft, run_direct, x.device, prefer=_preferred[fast_key])
        if pipelines or clear is None:
            with _lock:
                _store(key, hit)
    choice, _, pipeline = hit.partition(":")
    if pipeline and target is not None:
        target.record(pipeline)
        _pipeline_of[fast_key] = pipeline
    _fast[fast_key] = choice
    return choice


def check_joint_backward(x: torch.Tensor, w: torch.Tensor, args: tuple,
                         run_joint: Callable[[], tuple], run_separate: Callable[[], tuple],
                         target: PipelineTarget) -> None:
    """Where both gradients of a CUDA problem chose the fused kernel, whether its joint pass
    (both gradients from one kernel, a component of its own) may run: once per problem, its
    output is compared with the two separate gradients (each already compared with cuDNN)
    before the operator records it; a mismatch or an error disqualifies it for the process.
    Until then, or otherwise, the backward runs the two chosen pipelines."""
    w_shape = tuple(w.shape)
    key = _fast_key(x, w_shape, args + ("backward",))
    if key in _fast:
        return
    _fast[key] = "fft"
    chose = [_pipeline_of.get(_fast_key(x, w_shape, args + (d,))) for d in ("grad_input", "grad_weight")]
    part = component("fused", BACKWARD)
    if chose != ["fused", "fused"] or not _may_run(part) or not target.applies("fused"):
        return
    if part not in verified_components():
        with torch.no_grad():
            references = run_separate()
            try:
                with forced_pipeline("fused"):
                    joint = run_joint()
                agree = all(_matches(j, r) for j, r in zip(joint, references))
                why = "disagreed with the separate gradients"
            except RuntimeError as e:
                agree, why = False, f"failed ({str(e).splitlines()[0]})"
        if not agree:
            _disqualify(part)
            warnings.warn(f"fftconv_ext: the fused kernel's joint backward (not yet verified on a GPU) {why} on input "
                          f"{tuple(x.shape)}, weight {w_shape}, {args}; it is not used again in this process",
                          RuntimeWarning, stacklevel=3)
            return
    target.record("fused")


def agrees(x: torch.Tensor, w: torch.Tensor, args: tuple, forward: str) -> bool:
    """Whether this process already knows that the input and weight gradients of a problem
    take the forward's path: a training call can then take that path whole (one autograd
    node, and a decided call), without the per-direction machinery."""
    w_shape = tuple(w.shape)
    return all(_fast.get(_fast_key(x, w_shape, args + (d,))) == forward for d in ("grad_input", "grad_weight"))


# The call at which a measured choice is measured again (per process; see the module docstring).
RECHECK_AT = 32


def measured(x_shape: tuple, w_shape: tuple, geometry: tuple, device_type: str = "cpu") -> bool:
    """Whether choose() decides this problem by measurement (not by arithmetic alone)."""
    return clear_choice(_ratio(x_shape, w_shape, geometry), device_type) is None


def recheck(x: torch.Tensor, w: torch.Tensor, args: tuple, first: str,
            run_fft: Callable[[], torch.Tensor], run_direct: Callable[[], torch.Tensor]) -> str:
    """The choice after measuring once more: `first` if the new measurement agrees, else
    what a third one says. Remembered in memory and on disk like choose()'s."""
    prefer = _preferred.get(_fast_key(x, tuple(w.shape), args))
    with torch.no_grad():
        second = _measure(run_fft, run_direct, x.device, prefer=prefer)
        final = first if second == first else _measure(run_fft, run_direct, x.device, prefer=prefer)
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
        _preferred.clear()
        _pipeline_of.clear()
        _disqualified.clear()
        decided_calls.clear()
        _loaded_from = None
    from . import _C
    _C.clear_pipeline_choices()
    _C.clear_gpu_disqualifications()
