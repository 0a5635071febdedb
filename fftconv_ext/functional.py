"""conv1d / conv2d / conv3d with the signature and results of torch.nn.functional,
computed by the fused FFT operator (conv3d through its depth fold, depth_fold.py).

Argument checks live here so that users get F.conv-style errors naming the
argument; padding modes are resolved here (circular natively, reflect and
replicate by an explicit pad followed by a 'valid' correlation).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from . import _ops  # noqa: F401  (fake kernels and autograd of the ops)
from . import algo as _algo
from . import cuda_pipelines as _cp
from .algo import ALGOS, choose
from .algo import decided_calls as _decided_calls
from .arguments import (MAX_DECIDED_CALLS, ConvArgumentError, all_finite, check_not_empty, check_tensors,
                        decided_call_for, resolve_padding, stride_dilation_groups)
from ._shapes import LOW_PRECISION, autocast_dtype
from .tracing import is_tracing, under_dispatch_mode
from . import runtime_choice
from .problem import DIRECT_CONV, ConvProblem
from .onnx_export import exporting_to_onnx

__all__ = ["conv1d", "conv2d", "conv3d", "ConvArgumentError", "ALGOS"]


_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

IntOrTuple = Union[int, Sequence[int]]


def _conv_nd(input, weight, bias, stride, padding, dilation, groups, padding_mode, algo, dim: int):
    key = None
    if not torch.compiler.is_compiling():
        # a call seen before (same shapes, dtypes, devices and arguments, all validated
        # then) skips the checks: ~15 us per call. ONNX export traces (torch.jit: no key then)
        # or runs on fake tensors, which never reach a decided call: it is checked below.
        key, decided = decided_call_for(_decided_calls, input, weight, bias, stride, padding, dilation, groups,
                                        padding_mode, dim, algo)
        if decided is not None:
            return decided(input, weight, bias)
    onnx = exporting_to_onnx()
    if onnx:
        key = None
    fname = f"conv{dim}d"
    check_tensors(input, weight, bias, dim, fname)
    stride, dilation, groups = stride_dilation_groups(stride, dilation, groups, dim, fname)
    if padding_mode not in _PADDING_MODES:
        raise ConvArgumentError(f"{fname}: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")

    unbatched = input.dim() == dim + 1
    x = input.unsqueeze(0) if unbatched else input
    c_in, c_out = x.shape[1], weight.shape[0]
    kernel = tuple(weight.shape[2:])
    if c_in % groups != 0:
        raise ConvArgumentError(f"{fname}: groups={groups} must divide in_channels={c_in}")
    if c_out % groups != 0:
        raise ConvArgumentError(f"{fname}: groups={groups} must divide out_channels={c_out}")
    if weight.shape[1] * groups != c_in:
        raise ConvArgumentError(
            f"{fname}: input has {c_in} channels but weight expects in_channels = "
            f"weight.shape[1] * groups = {weight.shape[1]} * {groups} = {weight.shape[1] * groups}")
    if any(k == 0 for k in kernel):
        raise ConvArgumentError(f"{fname}: weight has an empty kernel, shape {tuple(weight.shape)}")
    check_not_empty(x, weight, 0, fname)
    pads = resolve_padding(padding, kernel, stride, dilation, fname)
    spatial = tuple(x.shape[2:])
    for axis, (n, k, d, (pl, pr)) in enumerate(zip(spatial, kernel, dilation, pads)):
        if n + pl + pr < d * (k - 1) + 1:
            raise ConvArgumentError(
                f"{fname}: kernel size (dilated) {d * (k - 1) + 1} along spatial axis {axis} is larger "
                f"than the padded input size {n + pl + pr} (input {n}, padding {pl}+{pr})")

    if padding_mode == "reflect":
        for axis, (n, (pl, pr)) in enumerate(zip(spatial, pads)):
            if pl >= n or pr >= n:  # the rule of F.pad(mode='reflect')
                raise ConvArgumentError(
                    f"{fname}: reflect padding ({pl}, {pr}) along spatial axis {axis} must be smaller than "
                    f"the input size {n}")
    if padding_mode == "circular":
        for axis, (n, (pl, pr)) in enumerate(zip(spatial, pads)):
            if pl > n or pr > n:  # the rule of F.pad(mode='circular'), kept for parity
                raise ConvArgumentError(
                    f"{fname}: circular padding ({pl}, {pr}) along spatial axis {axis} wraps around "
                    f"the input of size {n} more than once")
    if algo not in ALGOS:
        raise ConvArgumentError(f"{fname}: algo must be one of {ALGOS}, got {algo!r}")
    if onnx:  # the graph holds ONNX's own Conv (onnx_export.py)
        algo = "direct"

    problem = ConvProblem(dim, tuple(x.shape), tuple(weight.shape), stride, tuple(tuple(p) for p in pads), dilation,
                          groups, padding_mode, bias=bias is not None)

    def run_fft():
        return problem.run("forward", "fft", x, weight, bias)

    def run_direct():
        return problem.run("forward", "direct", x, weight, bias)

    if c_in == 0:
        # no input channels: F's own result (its output shape for this case is its convention)
        choice = "direct"
        y = run_direct()
    elif algo == "fft":
        choice = "fft"
        if x.device.type == "cuda":  # which FFT pipeline, by measurement (docs/design.md §17)
            choose(problem, x, "forward", run_fft, run_direct,
                   problem.pipeline_target(x.device, x.dtype, _cp.FORWARD), with_direct=False)
        y = run_fft()
    elif algo == "direct":
        choice = "direct"
        y = run_direct()
    elif runtime_choice.applies(algo, onnx):
        # under torch.compile the choice is made when the graph runs (runtime_choice.py)
        choice = "runtime"
        y = runtime_choice.call(x, weight, bias, dim, stride, padding, dilation, groups, padding_mode)
    elif dim == 3 and under_dispatch_mode():
        # under FlopCounterMode (or another mode that sees every op) the folded problem would be
        # counted with its zero taps: auto takes F.conv3d, counted as PyTorch counts it
        choice = "direct"
        y = run_direct()
    else:
        choice = choose(problem, x, "forward", run_fft, run_direct,
                        problem.pipeline_target(x.device, x.dtype, _cp.FORWARD))
        # a training call: the input and weight gradients get choices of their own (docs/design.md §15);
        # a folded 3-D problem whose forward takes the FFT always, since its backward puts a
        # NaN/Inf output gradient's gradients where F.conv3d does, which the folded operator's
        # own backward would not
        if _trains_per_direction(x, weight, bias, pads, padding_mode) and (
                (problem.fold is not None and choice == "fft") or not _algo.agrees(problem, x, choice)):
            # decided once both gradients are chosen (after a backward): until then a later call
            # may find that they agree with the forward, and take one path whole
            if _algo.gradients_chosen(problem, x):
                _remember(key, x, lambda: _per_direction_call(choice, unbatched, problem))
            y = _PerDirectionConv.apply(x, weight, bias, problem, choice)
            return y.squeeze(0) if unbatched else y
        y = run_fft() if choice == "fft" else run_direct()
    _remember(key, x, lambda: _decided_call(choice, unbatched, padding, problem, x))
    return y.squeeze(0) if unbatched else y


def _remember(key, x, make_call) -> None:
    """Keep the decided call make_call() builds for later calls with this key (none while
    tracing or under a dispatch mode, or without a key); the table is cleared when full."""
    if key is None or is_tracing(x) or under_dispatch_mode():
        return
    if len(_decided_calls) >= MAX_DECIDED_CALLS:
        _decided_calls.clear()
    _decided_calls[key] = make_call()


def _decided_call(choice, unbatched, padding, pb: ConvProblem, x):
    """The decided call for later calls with the same arguments (arguments.decided_call_for): the same
    problem, so the same ConvProblem."""
    stride, dilation, groups = pb.stride, pb.dilation, pb.groups
    if choice == "direct" and pb.padding_mode == "zeros" and not unbatched and not (
            x.device.type == "cpu" and (x.dtype in LOW_PRECISION or pb.direct_width_pad)):
        conv = DIRECT_CONV[pb.dim]
        return lambda inp, w, b: conv(inp, w, b, stride, padding, dilation, groups)

    def call(inp, w, b):
        y = pb.run("forward", choice, inp.unsqueeze(0) if unbatched else inp, w, b)
        return y.squeeze(0) if unbatched else y
    return call


def _per_direction_call(choice, unbatched, pb: ConvProblem):
    """The decided call of a training call on the per-direction path (the key holds grad mode,
    requires_grad and autocast, which decided that path): the same problem and forward choice,
    without the checks and the ConvProblem built again (a step of a small layer feels both)."""
    def call(inp, w, b):
        y = _PerDirectionConv.apply(inp.unsqueeze(0) if unbatched else inp, w, b, pb, choice)
        return y.squeeze(0) if unbatched else y
    return call


def _trains_per_direction(x, weight, bias, pads, padding_mode) -> bool:
    """Whether an algo='auto' call takes the per-direction path: gradients are wanted, and the
    problem is one both backward paths compute as they are (zero padding, equal on both sides;
    float32/float64 outside autocast). Other calls use the forward's choice for the backward too."""
    if not torch.is_grad_enabled() or is_tracing(x) or under_dispatch_mode():
        return False
    if not (x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)):
        return False
    return (padding_mode == "zeros" and all(pl == pr for pl, pr in pads) and
            x.dtype in (torch.float32, torch.float64) and weight.dtype == x.dtype and
            autocast_dtype(x.device) is None and x.device.type in ("cpu", "cuda"))


class _PerDirectionConv(torch.autograd.Function):
    """algo='auto' for training: the forward, the input gradient and the weight gradient each
    run the path measured faster for them (as cuDNN picks forward, backward-data and
    backward-filter algorithms apart). PyTorch's direct backward is often several times its
    forward where the FFT's is about twice, so a direct forward with an FFT backward is common."""

    @staticmethod
    def forward(ctx, x, weight, bias, problem: ConvProblem, forward_choice: str):
        ctx.save_for_backward(x, weight)
        ctx.problem, ctx.has_bias = problem, bias is not None
        return problem.run("forward", forward_choice, x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        pb = ctx.problem
        grad = grad.contiguous()
        want_x, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]

        def run(direction, algorithm):
            return pb.run(direction, algorithm, x, weight, grad=grad)

        def chosen(direction, component):
            return choose(pb, x, direction, lambda: run(direction, "fft"), lambda: run(direction, "direct"),
                          pb.pipeline_target(x.device, x.dtype, component))

        with torch.no_grad():
            gx = gw = None
            if pb.fold is not None and not all_finite(grad, x, weight):
                # the folded ops' NaN/Inf fallback would spread them over the zero taps between depth taps
                c_x = c_w = "direct"
            else:
                c_x = chosen("grad_input", _cp.GRAD_INPUT) if want_x else None
                c_w = chosen("grad_weight", _cp.GRAD_WEIGHT) if want_w else None
                if want_x and want_w and {c_x, c_w} == {"fft", "direct"}:
                    # the gradient chosen direct rides along in the other's FFT pass where the
                    # model puts taking it along below its direct time
                    if pb.joins_backward(x.device.type, "grad_input" if c_x == "direct" else "grad_weight"):
                        c_x = c_w = "fft"
            if want_x and want_w and c_x == c_w:  # one joint pass: the output gradient transformed once
                if c_x == "fft" and x.device.type == "cuda" and _algo.once(pb, x, "joint backward"):
                    # the joint pass is a kernel of its own: compared first
                    _cp.check_joint_backward([_algo.chosen_pipeline(pb, x, d) for d in ("grad_input", "grad_weight")],
                                             lambda: run("backward", "fft"),
                                             lambda: (run("grad_input", "fft"), run("grad_weight", "fft")),
                                             pb.pipeline_target(x.device, x.dtype, _cp.BACKWARD),
                                             f"input {tuple(x.shape)}, {pb}")
                gx, gw = run("backward", c_x)
            else:
                gx = run("grad_input", c_x) if want_x else None
                gw = run("grad_weight", c_w) if want_w else None
        gb = grad.sum(dim=[0] + list(range(2, grad.dim()))) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           stride: IntOrTuple = 1, padding: Union[str, IntOrTuple] = 0, dilation: IntOrTuple = 1,
           groups: int = 1, padding_mode: str = "zeros", algo: str = "auto") -> torch.Tensor:
    """2-D cross-correlation through the FFT, a drop-in for ``torch.nn.functional.conv2d``.

    Args:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
        weight: ``(C_out, C_in / groups, kH, kW)``.
        bias: optional ``(C_out,)``.
        stride, dilation: int or ``(sH, sW)``.
        padding: int, ``(pH, pW)``, ``'same'`` or ``'valid'``.
        groups: number of channel groups.
        padding_mode: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``
            (as in ``nn.Conv2d``).
        algo: ``'fft'`` (the fused FFT operator), ``'direct'`` (``F.conv2d``) or
            ``'auto'`` (default): the one a cost model of the problem's arithmetic picks,
            per direction when training; measured instead with
            ``fftconv_ext.backends.benchmark = True`` (see :mod:`fftconv_ext.algo`).

    float32/float64 are computed in their own precision; float16/bfloat16 in
    float32 and returned in the input dtype. Differentiable in input, weight and
    bias; usable under ``torch.compile``.

    Example::

        >>> x = torch.randn(8, 64, 56, 56)
        >>> w = torch.randn(64, 1, 31, 31)
        >>> y = fftconv_ext.conv2d(x, w, padding="same", groups=64)
    """
    return _conv_nd(input, weight, bias, stride, padding, dilation, groups, padding_mode, algo, 2)


def conv1d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           stride: IntOrTuple = 1, padding: Union[str, IntOrTuple] = 0, dilation: IntOrTuple = 1,
           groups: int = 1, padding_mode: str = "zeros", algo: str = "auto") -> torch.Tensor:
    """1-D cross-correlation through the FFT, a drop-in for ``torch.nn.functional.conv1d``.

    ``input`` is ``(N, C_in, L)`` or ``(C_in, L)``, ``weight`` ``(C_out, C_in / groups, k)``;
    everything else as in :func:`conv2d`.
    """
    return _conv_nd(input, weight, bias, stride, padding, dilation, groups, padding_mode, algo, 1)


def conv3d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           stride: IntOrTuple = 1, padding: Union[str, IntOrTuple] = 0, dilation: IntOrTuple = 1,
           groups: int = 1, padding_mode: str = "zeros", algo: str = "auto") -> torch.Tensor:
    """3-D cross-correlation through the FFT, a drop-in for ``torch.nn.functional.conv3d``.

    ``input`` is ``(N, C_in, D, H, W)`` or unbatched ``(C_in, D, H, W)``, ``weight``
    ``(C_out, C_in / groups, kD, kH, kW)``; stride, padding and dilation are ints or
    triples; everything else as in :func:`conv2d`. The FFT path runs the 2-D operator on
    the depth-folded problem (``fftconv_ext/depth_fold.py``).

    Example::

        >>> x = torch.randn(1, 48, 32, 32, 32)
        >>> w = torch.randn(48, 1, 21, 21, 21)
        >>> y = fftconv_ext.conv3d(x, w, padding="same", groups=48)
    """
    return _conv_nd(input, weight, bias, stride, padding, dilation, groups, padding_mode, algo, 3)
