"""algo="auto": direct convolution (F.conv, i.e. cuDNN/oneDNN) or the FFT operator, per problem
and direction, the way ``torch.backends.cudnn`` chooses its algorithms.

By default the choice comes from a cost model (fftconv_ext/cost_model.py, docs/design.md §15):
the problem's arithmetic ratio (direct multiply-adds over the FFT path's estimated work) against a
threshold per device type and direction, fitted from measurements. Nothing is timed, nothing is
written to disk, and every process, eager or under torch.compile/export, makes the same choice.
Forward, input gradient and weight gradient are chosen apart (a direct forward with FFT gradients
is common on the CPU, where PyTorch's direct backward costs several forwards).

With ``fftconv_ext.backends.benchmark = True`` (like ``torch.backends.cudnn.benchmark``) the first
call of a problem whose ratio is near its threshold times both paths on the real inputs (one
warm-up call each, then the median of a few calls in alternating order) and keeps the faster;
problems far from the threshold (``cost_model.CLEAR_FACTOR``) keep the model's choice. Measured
choices live in memory for the process, and on disk only where ``backends.cache_dir`` is set:
one small file per problem, written whole and renamed into place, so concurrent processes never
lose or corrupt each other's entries; an unreadable or foreign file is ignored.

On CUDA the FFT side is several pipelines (docs/design.md §17: row-pruned, whole-plane, the fused
small-plane kernel). By default the operator runs its default pipeline, the one that has passed
the GPU check (``fftconv_ext.backends.verified_on_gpu()``), and nothing is measured. Under
``benchmark`` the candidates are timed beside cuDNN: the verified pipelines, and the others only
with ``fftconv_ext.backends.cuda_unverified = True`` and only where they run the problem
themselves. An unverified candidate is taken only after its output on the measuring call matched
cuDNN's (computed without TF32); a mismatch, or a candidate that raises, disqualifies it for the
process, with one warning. Where both gradients chose the fused kernel, its joint pass is compared
with them before it is used.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from typing import Callable, Dict, Optional, Sequence

import torch

from . import backends, cost_model
from .tracing import is_tracing, under_dispatch_mode
from .cost_model import arithmetic_ratio, problem_ratio  # noqa: F401  (the model's terms, re-exported)

ALGOS = ("auto", "fft", "direct")

_lock = threading.Lock()
_memory: Dict[str, str] = {}      # problem key (str) -> measured choice ("fft", "direct", "fft:<pipeline>")
_fast: Dict[tuple, str] = {}      # per-call lookup (see _fast_key) -> "fft" or "direct"
_pipeline_of: Dict[tuple, str] = {}  # fast key -> the CUDA pipeline recorded for it
decided_calls: Dict[tuple, Callable] = {}  # functional.conv1d/conv2d calls whose path is chosen (arguments.call_key)


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
    decided calls hold it, so a changed setting is chosen anew."""
    return backends._version


def problem_key(device: torch.device, dtype: torch.dtype, x_shape: tuple, w_shape: tuple, args: tuple) -> str:
    """What a measured choice depends on: the device, the software, the operator's settings,
    the thread count, and the problem."""
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    return "|".join(map(str, (_device_name(device), torch.__version__, build_id(), backends.pipeline_key(), threads,
                              dtype, x_shape, w_shape, args)))


def _direction(args: tuple) -> str:
    """The direction a choice is for: functional.py appends it to the forward's arguments."""
    return args[-1] if args and args[-1] in ("grad_input", "grad_weight") else "forward"


# ---- the disk cache (benchmark mode with backends.cache_dir set) ---------------

def entry_path(key: str) -> Optional[str]:
    """The file that holds the measured choice of problem `key`, or None (no cache_dir)."""
    if backends.cache_dir is None:
        return None
    name = hashlib.sha256(key.encode()).hexdigest()[:32] + ".json"
    return os.path.join(backends.cache_dir, "auto", name)


def _valid(choice) -> bool:
    return isinstance(choice, str) and choice.split(":")[0] in ("fft", "direct")


def _read_entry(key: str) -> Optional[str]:
    path = entry_path(key)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    # another problem's file (a hash collision, a hand edit) or a malformed one: not ours
    if not isinstance(data, dict) or data.get("key") != key or not _valid(data.get("choice")):
        return None
    return data["choice"]


def _write_entry(key: str, choice: str) -> None:
    path = entry_path(key)
    if path is None:
        return
    try:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"key": key, "choice": choice}, f)
            os.replace(tmp, path)  # atomic: a reader sees the old file or the new one, whole
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass  # a read-only folder: the choice lives in memory for this process


# ---- choices while tracing ------------------------------------------------------

def _hint(v):
    """An int for a size: itself, or a symbolic size's example value (None if it has none, or
    under torch.compile, whose symbolic sizes give none without a guard on their value)."""
    if isinstance(v, torch.SymInt):
        if torch.compiler.is_compiling():
            return None
    elif isinstance(v, int):
        return v
    node = getattr(v, "node", None)
    hint = getattr(node, "hint", None)
    return int(hint) if isinstance(hint, int) else None


def _concrete(value):
    """Nested tuples of sizes with every symbolic size replaced by its example value, or None."""
    if isinstance(value, (tuple, list)):
        out = [_concrete(v) for v in value]
        return None if any(o is None for o in out) else tuple(out)
    return _hint(value)


@torch.compiler.assume_constant_result
def _static_choice(device_type: str, direction: str, x_shape: tuple, w_shape: tuple, geometry: tuple) -> str:
    """The model's choice while torch.compile or export traces (sizes as ints)."""
    return cost_model.choice(problem_ratio(x_shape, w_shape, geometry), device_type, direction,
                             cost_model.kind(w_shape))


def _traced_choice(x: torch.Tensor, w: torch.Tensor, args: tuple, geometry: tuple) -> str:
    """The choice under tracing: what eager makes for the example sizes (a measured one if this
    process measured it, else the model's). Where a size is symbolic without an example value
    (torch.compile(dynamic=True), data-dependent sizes) one graph serves every size: the FFT
    path, which is correct for all of them, unless the kernel has a single tap."""
    shapes = _concrete((tuple(x.shape), tuple(w.shape), geometry))
    if shapes is None:
        return "direct" if all(k == 1 for k in w.shape[2:]) else "fft"
    x_shape, w_shape, geometry = shapes
    if backends.benchmark:
        hit = _memory.get(problem_key(x.device, x.dtype, x_shape, w_shape, args))
        if hit is not None:
            return hit.split(":")[0]
    return _static_choice(x.device.type, _direction(args), x_shape, w_shape, geometry)


# ---- measuring (benchmark mode) -------------------------------------------------

# Timed calls per candidate after its warm-up call; the median decides. Candidates alternate
# (rotating order), so a slow spell of the machine falls on all of them alike.
ROUNDS = 5


def _time_once(fn: Callable[[], torch.Tensor], device: torch.device) -> float:
    """Seconds of one call of fn (synchronised on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def _measure_many(runs: Dict[str, Callable[[], torch.Tensor]], device: torch.device) -> str:
    """The name of the fastest run: one warm-up call each (plans, caches, first-touch memory),
    then ROUNDS rounds in rotating order; the smallest median wins."""
    names = list(runs)
    if len(names) == 1:
        return names[0]
    for name in names:
        _time_once(runs[name], device)
    times: Dict[str, list] = {n: [] for n in names}
    for r in range(ROUNDS):
        for i in range(len(names)):
            name = names[(i + r) % len(names)]
            times[name].append(_time_once(runs[name], device))
    return min(names, key=lambda n: statistics.median(times[n]))


def _measure(run_fft: Callable[[], torch.Tensor], run_direct: Callable[[], torch.Tensor],
             device: torch.device) -> str:
    """'fft' or 'direct', whichever is faster on these inputs."""
    return _measure_many({"fft": run_fft, "direct": run_direct}, device)


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
    """'fft' or 'direct' for this problem and direction (see the module docstring). `args` ends
    with "grad_input" or "grad_weight" for a gradient's choice. On CUDA under benchmark, with a
    PipelineTarget given, the FFT pipelines are candidates too, and the target records the chosen
    one in the operator; with_direct=False (algo='fft') chooses among them alone."""
    if not with_direct:
        if not backends.benchmark or is_tracing(x) or under_dispatch_mode():
            return "fft"  # the operator's default pipeline
        args = args + ("fft",)
    if x.device.type == "meta":
        return "fft"  # shapes only: the op's fake kernel keeps the memory format (F.conv2d's meta one does not)
    if is_tracing(x) or under_dispatch_mode():
        return _traced_choice(x, w, args, geometry)
    x_shape, w_shape = tuple(x.shape), tuple(w.shape)
    fast_key = _fast_key(x, w_shape, args)
    hit = _fast.get(fast_key)
    if hit is not None:
        return hit
    direction = _direction(args)
    if not backends.benchmark:
        hit = cost_model.choice(problem_ratio(x_shape, w_shape, geometry), x.device.type, direction,
                                cost_model.kind(w_shape))
        _fast[fast_key] = hit
        return hit
    key = problem_key(x.device, x.dtype, x_shape, w_shape, args)
    with _lock:
        hit = _memory.get(key)
    if hit is None:
        hit = _read_entry(key)
    remembered = hit.partition(":")[2] if hit is not None else ""
    if remembered and remembered not in ("default", "rows") and (
            target is None or not _may_run(component(remembered, target.direction))):
        hit = None  # a pipeline this process may not run (another setting, or disqualified): measured again
    if hit is None:
        clear = cost_model.clear_choice(problem_ratio(x_shape, w_shape, geometry), x.device.type, direction,
                                        cost_model.kind(w_shape)) if with_direct else "fft"
        pipelines = _pipelines_for(x.device, target) if target is not None else ()
        if len(pipelines) > 1 and clear != "direct":
            problem = f"input {x_shape}, weight {w_shape}, {args}"
            with torch.no_grad():
                hit = _measure_pipelines(run_fft, run_direct, pipelines, x.device, with_direct and clear is None,
                                         problem, target.direction)
        elif clear is not None:
            hit = clear  # far from the threshold: the model's choice, not stored
        else:
            with torch.no_grad():
                hit = _measure(run_fft, run_direct, x.device)
        if clear is None or len(pipelines) > 1:
            with _lock:
                _memory[key] = hit
            _write_entry(key, hit)
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


def clear_memory() -> None:
    """Forget the in-memory choices (files under backends.cache_dir stay); mostly for tests."""
    with _lock:
        _memory.clear()
        _fast.clear()
        _pipeline_of.clear()
        _disqualified.clear()
        decided_calls.clear()
    from . import _C
    _C.clear_pipeline_choices()
    _C.clear_gpu_disqualifications()
