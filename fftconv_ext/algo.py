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

import threading
import warnings
from typing import Callable, Dict, Optional

import torch

from . import backends, choice_cache, cost_model
from . import candidate_timing as timing
from . import cuda_pipelines as cp
from .cuda_pipelines import (BACKWARD, FORWARD, GRAD_INPUT, GRAD_WEIGHT, PIPELINES,  # noqa: F401  (re-exported)
                             PipelineTarget, candidate_pipelines, component, exact_direct, forced_pipeline,
                             verified_components, verified_pipelines)
from .choice_cache import build_id, entry_path, problem_key  # noqa: F401  (re-exported)
from .tracing import is_tracing, under_dispatch_mode
from .cost_model import arithmetic_ratio, problem_ratio  # noqa: F401  (the model's terms, re-exported)

ALGOS = ("auto", "fft", "direct")

_lock = threading.Lock()
_memory: Dict[str, str] = {}      # problem key (str) -> measured choice ("fft", "direct", "fft:<pipeline>")
_fast: Dict[tuple, str] = {}      # per-call lookup (see _fast_key) -> "fft" or "direct"
_pipeline_of: Dict[tuple, str] = {}  # fast key -> the CUDA pipeline recorded for it
decided_calls: Dict[tuple, Callable] = {}  # functional.conv1d/conv2d calls whose path is chosen (arguments.call_key)


def settings_version() -> int:
    """Bumped by every change of fftconv_ext.backends: the in-memory keys of
    decided calls hold it, so a changed setting is chosen anew."""
    return backends._version


def _direction(args: tuple) -> str:
    """The direction a choice is for: functional.py appends it to the forward's arguments."""
    return args[-1] if args and args[-1] in ("grad_input", "grad_weight") else "forward"


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
        hit = _memory.get(choice_cache.problem_key(x.device, x.dtype, x_shape, w_shape, args))
        if hit is not None:
            return hit.split(":")[0]
    return _static_choice(x.device.type, _direction(args), x_shape, w_shape, geometry)


def _measure(run_fft: Callable[[], torch.Tensor], run_direct: Callable[[], torch.Tensor],
             device: torch.device) -> str:
    """'fft' or 'direct', whichever is faster on these inputs."""
    return timing.measure_many({"fft": run_fft, "direct": run_direct}, device)


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
    key = choice_cache.problem_key(x.device, x.dtype, x_shape, w_shape, args)
    with _lock:
        hit = _memory.get(key)
    if hit is None:
        hit = choice_cache.read_entry(key)
    remembered = hit.partition(":")[2] if hit is not None else ""
    if remembered and remembered not in ("default", "rows") and (
            target is None or not cp.may_run(cp.component(remembered, target.direction))):
        hit = None  # a pipeline this process may not run (another setting, or disqualified): measured again
    if hit is None:
        clear = cost_model.clear_choice(problem_ratio(x_shape, w_shape, geometry), x.device.type, direction,
                                        cost_model.kind(w_shape)) if with_direct else "fft"
        pipelines = cp.pipelines_for(x.device, target) if target is not None else ()
        if len(pipelines) > 1 and clear != "direct":
            problem = f"input {x_shape}, weight {w_shape}, {args}"
            with torch.no_grad():
                hit = cp.measure_pipelines(run_fft, run_direct, pipelines, x.device, with_direct and clear is None,
                                         problem, target.direction)
        elif clear is not None:
            hit = clear  # far from the threshold: the model's choice, not stored
        else:
            with torch.no_grad():
                hit = _measure(run_fft, run_direct, x.device)
        if clear is None or len(pipelines) > 1:
            with _lock:
                _memory[key] = hit
            choice_cache.write_entry(key, hit)
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
    part = cp.component("fused", BACKWARD)
    if chose != ["fused", "fused"] or not cp.may_run(part) or not target.applies("fused"):
        return
    if part not in cp.verified_components():
        with torch.no_grad():
            references = run_separate()
            try:
                with cp.forced_pipeline("fused"):
                    joint = run_joint()
                agree = all(cp.matches(j, r) for j, r in zip(joint, references))
                why = "disagreed with the separate gradients"
            except RuntimeError as e:
                agree, why = False, f"failed ({str(e).splitlines()[0]})"
        if not agree:
            cp.disqualify(part)
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
        cp.disqualified.clear()
        decided_calls.clear()
    from . import _C
    _C.clear_pipeline_choices()
    _C.clear_gpu_disqualifications()
