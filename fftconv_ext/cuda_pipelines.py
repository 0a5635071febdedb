"""CUDA: the FFT pipelines as candidates of the choice (docs/design.md §17): which ones may run
(verified on a GPU, or opted in and not disqualified), where a choice is recorded in the
operator, and how benchmark mode measures them, comparing an unverified pipeline's output with
cuDNN's before it is taken."""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Callable, Dict, Optional, Sequence

import torch

from . import backends
from .candidate_timing import measure_many


PIPELINES = ("rows", "planes", "small_plane")
# Directions of the operator's record (pipeline_choice.h): 3 is both gradients in one pass.
FORWARD, GRAD_INPUT, GRAD_WEIGHT, BACKWARD = 0, 1, 2, 3
disqualified: set = set()   # GPU components whose output disagreed or that failed in this process


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
    if pipeline == "small_plane":
        return {GRAD_WEIGHT: "small_plane_weight_gradient", BACKWARD: "small_plane_joint_backward"}.get(direction, "small_plane")
    return pipeline


def verified_components() -> frozenset:
    """The GPU components that have passed the GPU check (one table in the operator's source)."""
    return frozenset(n for n, v in backends.verified_on_gpu().items() if v)


def verified_pipelines() -> frozenset:
    """The pipelines whose forward has passed the GPU check."""
    return frozenset(p for p in PIPELINES if component(p) in verified_components())


def may_run(name: str) -> bool:
    """A component may run: verified or opted in (backends.cuda_unverified), not disqualified."""
    from . import _C
    return name not in disqualified and bool(_C.gpu_component_enabled(name))


def disqualify(name: str) -> None:
    from . import _C
    disqualified.add(name)
    _C.disqualify_gpu_component(name)


def candidate_pipelines(target: PipelineTarget) -> tuple:
    """The FFT pipelines measured for a CUDA problem: the row-pruned one, which takes every
    problem, and each other one whose component may run and that runs the problem itself."""
    return tuple(p for p in PIPELINES
                 if p == "rows" or (may_run(component(p, target.direction)) and target.applies(p)))


def pipelines_for(device: torch.device, target: PipelineTarget) -> tuple:
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


def matches(out: torch.Tensor, reference: torch.Tensor) -> bool:
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


def measure_pipelines(run_fft: Callable[[], torch.Tensor], run_direct: Callable[[], torch.Tensor],
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
        if part in disqualified:
            continue

        def run(name=name):
            with forced_pipeline(name):
                return run_fft()
        try:
            out = run()
        except RuntimeError as e:  # torch.OutOfMemoryError too
            if part not in verified:
                disqualify(part)
            warnings.warn(f"fftconv_ext: the CUDA pipeline '{name}' failed on {problem} ({str(e).splitlines()[0]}); "
                          + ("it is not used again in this process" if part not in verified else
                             "it is not a candidate for this problem"), RuntimeWarning, stacklevel=3)
            continue
        if part not in verified:
            if reference is None:
                with exact_direct():
                    reference = run_direct()
            if not matches(out, reference):
                disqualify(part)
                warnings.warn(f"fftconv_ext: the CUDA pipeline '{name}' (not yet verified on a GPU) disagreed with "
                              f"the direct convolution on {problem}; it is not used again in this process",
                              RuntimeWarning, stacklevel=3)
                continue
        del out
        runs["fft:" + name] = run
    if not runs:  # no candidate left: the default pipeline, the one that has run on a GPU
        return "fft:default"
    return measure_many(runs, device)


def check_joint_backward(chose: Sequence[Optional[str]], run_joint: Callable[[], tuple],
                         run_separate: Callable[[], tuple], target: PipelineTarget, problem: str) -> None:
    """Where both gradients of a CUDA problem chose the small-plane kernel (`chose`: the input and
    weight gradients' pipelines), whether its joint pass (both gradients from one kernel, a
    component of its own) may run: its output is compared with the two separate gradients
    (each already compared with cuDNN) before the operator records it; a mismatch or an error
    disqualifies it for the process. Until then, or otherwise, the backward runs the two
    chosen pipelines. Called once per problem."""
    part = component("small_plane", BACKWARD)
    if list(chose) != ["small_plane", "small_plane"] or not may_run(part) or not target.applies("small_plane"):
        return
    if part not in verified_components():
        with torch.no_grad():
            references = run_separate()
            try:
                with forced_pipeline("small_plane"):
                    joint = run_joint()
                agree = all(matches(j, r) for j, r in zip(joint, references))
                why = "disagreed with the separate gradients"
            except RuntimeError as e:
                agree, why = False, f"failed ({str(e).splitlines()[0]})"
        if not agree:
            disqualify(part)
            warnings.warn(f"fftconv_ext: the small-plane kernel's joint backward (not yet verified on a GPU) {why} on "
                          f"{problem}; it is not used again in this process", RuntimeWarning, stacklevel=3)
            return
    target.record("small_plane")
