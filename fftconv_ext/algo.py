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

On CUDA the FFT side is several pipelines (docs/design.md §17: row-pruned, whole-plane, the
small-plane kernel). By default the operator runs its default pipeline, the one that has passed
the GPU check (``fftconv_ext.backends.verified_on_gpu()``), and nothing is measured. Under
``benchmark`` the candidates are timed beside cuDNN: the verified pipelines, and the others only
with ``fftconv_ext.backends.cuda_unverified = True`` and only where they run the problem
themselves. An unverified candidate is taken only after its output on the measuring call matched
cuDNN's (computed without TF32); a mismatch, or a candidate that raises, disqualifies it for the
process, with one warning. Where both gradients chose the small-plane kernel, its joint pass is compared
with them before it is used.
"""
from __future__ import annotations

import threading
from typing import Callable, Dict, List, Optional, Tuple

import torch

from . import backends, choice_cache
from . import candidate_timing as timing
from . import cuda_pipelines as cp
from .cuda_pipelines import PipelineTarget
from .tracing import example_sizes, is_tracing, under_dispatch_mode

ALGOS = ("auto", "fft", "direct")

_lock = threading.Lock()
_memory: Dict[str, str] = {}      # problem key (str) -> measured choice ("fft", "direct", "fft:<pipeline>")
_fast: Dict[tuple, str] = {}      # per-call lookup (see _fast_key) -> "fft" or "direct"
_pipeline_of: Dict[tuple, str] = {}  # fast key -> the CUDA pipeline recorded for it
decided_calls: Dict[tuple, Callable] = {}  # functional.conv1d/conv2d calls whose path is chosen (arguments.decided_call_for)


def settings_version() -> int:
    """Bumped by every change of fftconv_ext.backends: the in-memory keys of
    decided calls hold it, so a changed setting is chosen anew."""
    return backends._version


@torch.compiler.assume_constant_result
def _static_choice(problem, device_type: str, direction: str) -> str:
    """The model's choice while torch.compile or export traces (sizes as ints)."""
    return problem.model_choice(device_type, direction)


def _traced_choice(problem, x: torch.Tensor, direction: str) -> str:
    """The choice under tracing: what eager makes for the example sizes (a measured one if this
    process measured it, else the model's). Where a size is symbolic without an example value
    (torch.compile(dynamic=True), data-dependent sizes) one graph serves every size: the FFT
    path, which is correct for all of them, unless the kernel has a single tap."""
    sizes = example_sizes((problem.x_shape, problem.w_shape))
    if sizes is None:
        return "direct" if all(k == 1 for k in problem.w_shape[2:]) else "fft"
    problem = problem.with_sizes(*sizes)
    if backends.benchmark:
        hit = _memory.get(choice_cache.problem_key(x.device, x.dtype, problem, direction))
        if hit is not None:
            return hit.split(":")[0]
    return _static_choice(problem, x.device.type, direction)


def _measure(run_fft: Callable[[], torch.Tensor], run_direct: Callable[[], torch.Tensor],
             device: torch.device) -> str:
    """'fft' or 'direct', whichever is faster on these inputs."""
    return timing.measure_many({"fft": run_fft, "direct": run_direct}, device)


def _fast_key(problem, x: torch.Tensor, direction: str) -> tuple:
    return (problem, direction, x.device, x.dtype, torch.get_num_threads(), backends._version)


def choose(problem, x: torch.Tensor, direction: str, run_fft: Callable[[], torch.Tensor],
           run_direct: Callable[[], torch.Tensor], target: Optional[PipelineTarget] = None,
           with_direct: bool = True) -> str:
    """'fft' or 'direct' for a problem (problem.ConvProblem) in one direction ("forward",
    "grad_input", "grad_weight"), x its input (for the device and dtype); see the module
    docstring. On CUDA under benchmark, with a PipelineTarget given, the FFT pipelines are
    candidates too, and the target records the chosen one in the operator; with_direct=False
    (algo='fft') chooses among them alone."""
    if not with_direct:
        if not backends.benchmark or is_tracing(x) or under_dispatch_mode():
            return "fft"  # the operator's default pipeline
        direction += ":fft"  # among the pipelines alone: keyed apart
    if x.device.type == "meta":
        return "fft"  # shapes only: the op's fake kernel keeps the memory format (F.conv2d's meta one does not)
    if is_tracing(x) or under_dispatch_mode():
        return _traced_choice(problem, x, direction)
    fast_key = _fast_key(problem, x, direction)
    hit = _fast.get(fast_key)
    if hit is not None:
        return hit
    model_direction = direction.partition(":")[0]
    if not backends.benchmark:
        hit = _fast[fast_key] = problem.model_choice(x.device.type, model_direction)
        return hit
    key = choice_cache.problem_key(x.device, x.dtype, problem, direction)
    with _lock:
        hit = _memory.get(key)
    if hit is None:
        hit = choice_cache.read_entry(key)
    remembered = hit.partition(":")[2] if hit is not None else ""
    if remembered and remembered not in ("default", "rows") and (
            target is None or not cp.may_run(cp.component(remembered, target.direction))):
        hit = None  # a pipeline this process may not run (another setting, or disqualified): measured again
    if hit is None:
        clear = problem.clear_choice(x.device.type, model_direction) if with_direct else "fft"
        pipelines = cp.pipelines_for(x.device, target) if target is not None else ()
        with torch.no_grad():
            if len(pipelines) > 1 and clear != "direct":
                hit = cp.measure_pipelines(run_fft, run_direct, pipelines, x.device, with_direct and clear is None,
                                           f"input {tuple(x.shape)}, {problem}, {direction}", target.direction)
            elif clear is not None:
                hit = clear  # far from the threshold: the model's choice, not stored
            else:
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


def chosen_pipeline(problem, x: torch.Tensor, direction: str) -> Optional[str]:
    """The CUDA pipeline benchmark mode recorded for a problem and direction, if any."""
    return _pipeline_of.get(_fast_key(problem, x, direction))


def once(problem, x: torch.Tensor, what: str) -> bool:
    """True the first time it is asked for (problem, what) in this process and these settings."""
    key = _fast_key(problem, x, what)
    if key in _fast:
        return False
    _fast[key] = "done"
    return True


def agrees(problem, x: torch.Tensor, forward: str) -> bool:
    """Whether the input and weight gradients of a problem take the forward's path: a training
    call can then take that path whole (one autograd node, and a decided call), without the
    per-direction machinery. By default the gradients' choices are the model's, known before
    any backward (and remembered as choose() would); under benchmark, once a backward chose them."""
    for direction in ("grad_input", "grad_weight"):
        key = _fast_key(problem, x, direction)
        hit = _fast.get(key)
        if hit is None:
            if backends.benchmark:
                return False
            hit = _fast[key] = problem.model_choice(x.device.type, direction)
        if hit != forward:
            return False
    return True


def gradients_chosen(problem, x: torch.Tensor) -> bool:
    """Whether this process has chosen both gradients' paths of a problem (a backward ran)."""
    return all(_fast_key(problem, x, d) in _fast for d in ("grad_input", "grad_weight"))


def choices() -> List[Tuple[object, str, str]]:
    """(problem, direction, choice) of every choice this process has made: for reports."""
    return [(k[0], k[1], v) for k, v in list(_fast.items()) if v in ("fft", "direct")]


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
