"""conv_transpose1d / conv_transpose2d / conv_transpose3d with the signature and results
of torch.nn.functional, computed by the fused operator's adjoint pipeline.

A transposed convolution is the adjoint of a correlation (docs/design.md §18): its
forward is the input gradient of the correlation whose input has the transposed
convolution's output size, with the same weight. So it runs the existing
``conv2d_grad_input`` op, whose autograd formulas (registered in _ops.py) give
its input gradient (the forward correlation), its weight gradient (the weight
gradient with the roles of input and output swapped) and second derivatives.
conv_transpose3d runs the same op on the depth-folded problem (depth_fold.py),
with the fold's adjoints around it.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from . import _ops  # noqa: F401  (fake kernels and autograd of the ops)
from .algo import ALGOS, choose
from .cuda_pipelines import GRAD_INPUT
from .algo import decided_calls as _decided_calls
from ._shapes import LOW_PRECISION, autocast_dtype, output_length, upcast
from . import runtime_choice
from .problem import ConvProblem
from .onnx_export import exporting_to_onnx
from .arguments import (MAX_DECIDED_CALLS, ConvArgumentError, all_finite, check_not_empty, check_tensors,
                        decided_call_for, int_tuple, memory_format_of, stride_dilation_groups)
from .tracing import is_tracing, under_dispatch_mode

__all__ = ["conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]

_DIRECT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}

IntOrTuple = Union[int, Sequence[int]]


def transposed_output_length(n: int, k: int, padding: int, output_padding: int, stride: int,
                             dilation: int) -> int:
    """Spatial output length of a transposed convolution (torch.nn.ConvTranspose's formula)."""
    return (n - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1


def _check_bias(bias, input, c_out: int, fname: str) -> None:
    if bias is None:
        return
    if not isinstance(bias, torch.Tensor):
        raise TypeError(f"{fname}: bias must be a Tensor or None, got {type(bias).__name__}")
    mixed_ok = autocast_dtype(input.device) is not None
    if bias.dtype != input.dtype and not (mixed_ok and bias.is_floating_point()):
        raise ConvArgumentError(f"{fname}: bias dtype {bias.dtype} does not match input dtype {input.dtype}")
    if bias.device != input.device:
        raise ConvArgumentError(f"{fname}: bias is on device {bias.device} but input is on device {input.device}")
    if bias.dim() != 1 or bias.shape[0] != c_out:
        raise ConvArgumentError(
            f"{fname}: bias must have shape ({c_out},) = (weight.shape[1] * groups,), got {tuple(bias.shape)}")


def _conv_transpose_nd(input, weight, bias, stride, padding, output_padding, groups, dilation, algo, dim: int):
    key = None
    if not torch.compiler.is_compiling():
        # a call seen before (same shapes, dtypes, devices, arguments) skips the checks and the
        # choice, as conv2d's decided calls do (arguments.decided_call_for; ONNX export as there)
        key, decided = decided_call_for(_decided_calls, input, weight, bias, stride, padding, dilation, groups,
                                        ("transpose", output_padding), dim, algo)
        if decided is not None:
            return decided(input, weight, bias)
    onnx = exporting_to_onnx()
    if onnx:
        key = None
    fname = f"conv_transpose{dim}d"
    check_tensors(input, weight, None, dim, fname)
    stride, dilation, groups = stride_dilation_groups(stride, dilation, groups, dim, fname)
    if isinstance(padding, str):
        raise ConvArgumentError(f"{fname}: padding must be an int or a tuple of {dim} ints (no 'same'/'valid' for "
                                f"transposed convolutions), got {padding!r}")
    padding = int_tuple(padding, dim, "padding")
    output_padding = int_tuple(output_padding, dim, "output_padding")
    if any(p < 0 for p in padding):
        raise ConvArgumentError(f"{fname}: padding must be non-negative, got {padding}")
    if any(op < 0 for op in output_padding):
        raise ConvArgumentError(f"{fname}: output_padding must be non-negative, got {output_padding}")
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= s and op >= d:
            raise ConvArgumentError(f"{fname}: output_padding {output_padding} must be smaller than either stride "
                                    f"{stride} or dilation {dilation}")
    if algo not in ALGOS:
        raise ConvArgumentError(f"{fname}: algo must be one of {ALGOS}, got {algo!r}")

    unbatched = input.dim() == dim + 1
    x = input.unsqueeze(0) if unbatched else input
    c_in, kernel = x.shape[1], tuple(weight.shape[2:])
    if weight.shape[0] != c_in:
        raise ConvArgumentError(f"{fname}: input has {c_in} channels but weight expects in_channels = "
                                f"weight.shape[0] = {weight.shape[0]} (weight is (in_channels, out_channels/groups, "
                                f"kernel...))")
    if c_in % groups != 0:
        raise ConvArgumentError(f"{fname}: groups={groups} must divide in_channels={c_in}")
    if any(k == 0 for k in kernel):
        raise ConvArgumentError(f"{fname}: weight has an empty kernel, shape {tuple(weight.shape)}")
    if c_in == 0:
        raise ConvArgumentError(f"{fname}: input and weight have no input channels, weight shape "
                                f"{tuple(weight.shape)}")
    check_not_empty(x, weight, 1, fname)
    c_out = weight.shape[1] * groups
    _check_bias(bias, input, c_out, fname)
    out_spatial = tuple(transposed_output_length(n, k, p, op, s, d) for n, k, p, op, s, d in
                        zip(x.shape[2:], kernel, padding, output_padding, stride, dilation))
    if any(n <= 0 for n in out_spatial):
        raise ConvArgumentError(f"{fname}: the output size {out_spatial} is not positive (input {tuple(x.shape[2:])}, "
                                f"kernel {kernel}, padding {padding}, stride {stride}, dilation {dilation})")

    # the correlation this is the adjoint of: its input has the output's size (docs/design.md §18)
    adjoint = ConvProblem(dim, (x.shape[0], c_out) + out_spatial, tuple(weight.shape), stride,
                          tuple((p, p) for p in padding), dilation, groups, transposed=True, bias=bias is not None)

    def direct(x_, w_, b_):
        return _DIRECT[dim](x_, w_, b_, stride, padding, output_padding, groups, dilation)

    def fft(x_, w_, b_):
        return _fft_conv_transpose(x_, w_, b_, adjoint)

    def run_direct():
        return direct(x, weight, bias)

    def run_fft():
        return fft(x, weight, bias)

    if onnx:  # the graph holds ONNX's own ConvTranspose (onnx_export.py)
        y = run_direct()
    elif algo == "fft" or (algo == "auto" and x.device.type == "meta"):
        y = run_fft()
    elif runtime_choice.applies(algo, onnx):  # under torch.compile: chosen when the graph runs
        y = runtime_choice.call_transposed(x, weight, bias, dim, stride, padding, output_padding, dilation, groups)
    elif algo == "direct" or (dim == 3 and under_dispatch_mode()):
        # (under FlopCounterMode the folded problem would be counted with its zero taps)
        y = run_direct()
    else:
        # the correlation it is the adjoint of (input of the output's size, output of the input's),
        # marked transposed, so keyed apart from that correlation's own calls
        choice = choose(adjoint, x, "forward", run_fft, run_direct,
                        adjoint.pipeline_target(x.device, x.dtype, GRAD_INPUT))
        y = run_fft() if choice == "fft" else run_direct()
    if key is not None and not is_tracing(x) and not under_dispatch_mode():
        if len(_decided_calls) >= MAX_DECIDED_CALLS:
            _decided_calls.clear()
        path = fft if (algo == "fft" or (algo == "auto" and choice == "fft")) else direct
        _decided_calls[key] = (lambda i, w_, b_: path(i.unsqueeze(0), w_, b_).squeeze(0)) if unbatched else path
    return y.squeeze(0) if unbatched else y


def _fft_conv_transpose(x, weight, bias, adjoint: ConvProblem):
    """The operator's input gradient of the adjoint correlation, applied to x (batched)."""
    dim, stride, dilation, groups = adjoint.dim, adjoint.stride, adjoint.dilation, adjoint.groups
    padding, out_spatial = [pl for pl, _ in adjoint.pads], adjoint.spatial
    layout = memory_format_of(x)
    low = autocast_dtype(x.device)
    if low is not None:  # F.conv_transpose runs in the autocast dtype: so do we
        x, weight = x.to(low), weight.to(low)
        bias = None if bias is None else bias.to(low)
    if dim == 3 and not all_finite(x, weight, bias):
        # the folded problem's own NaN/Inf fallback would spread a NaN over the zero taps between
        # depth taps: F.conv_transpose3d puts them where PyTorch does (in float32 for float16/bfloat16)
        op = [o - transposed_output_length(n, k, p, 0, s, d) for o, n, k, p, s, d in
              zip(out_spatial, x.shape[2:], weight.shape[2:], padding, stride, dilation)]
        xs, ws, bs = upcast(x, weight, bias)
        return F.conv_transpose3d(xs, ws, bs, stride, padding, op, groups, dilation).to(x.dtype)
    # the correlation of an out_spatial-sized input may have more outputs than x has entries
    # (output_padding >= stride, allowed when dilation is larger): they are zeros of the adjoint's input
    conv_out = [output_length(n, k, p, p, s, d) for n, k, p, s, d in
                zip(out_spatial, weight.shape[2:], padding, stride, dilation)]
    extra = [c - n for c, n in zip(conv_out, x.shape[2:])]
    if any(extra):
        x = F.pad(x, [v for e in reversed(extra) for v in (0, e)])
    y = adjoint.run("grad_input", "fft", weight=weight, grad=x)
    if bias is not None:
        y = y + bias.view((1, -1) + (1,) * dim).to(y.dtype)
    if x.dtype in LOW_PRECISION and y.dtype != x.dtype:
        y = y.to(x.dtype)
    return y.contiguous(memory_format=layout)  # F.conv_transpose keeps a channels_last input's layout


def conv_transpose2d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0, output_padding: IntOrTuple = 0,
                     groups: int = 1, dilation: IntOrTuple = 1, algo: str = "auto") -> torch.Tensor:
    """2-D transposed convolution through the FFT, a drop-in for
    ``torch.nn.functional.conv_transpose2d`` (same argument order).

    Args:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
        weight: ``(C_in, C_out / groups, kH, kW)``.
        bias: optional ``(C_out,)``.
        stride, padding, output_padding, dilation: int or a pair.
        groups: number of channel groups.
        algo: ``'fft'``, ``'direct'`` (``F.conv_transpose2d``) or ``'auto'`` (default):
            the one algo's cost model picks for this problem (measured under
            ``fftconv_ext.backends.benchmark``).

    Differentiable in input, weight and bias (second derivatives too); float16/bfloat16
    are computed in float32.
    """
    return _conv_transpose_nd(input, weight, bias, stride, padding, output_padding, groups, dilation, algo, 2)


def conv_transpose1d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0, output_padding: IntOrTuple = 0,
                     groups: int = 1, dilation: IntOrTuple = 1, algo: str = "auto") -> torch.Tensor:
    """1-D transposed convolution through the FFT, a drop-in for
    ``torch.nn.functional.conv_transpose1d``; ``input`` is ``(N, C_in, L)`` or ``(C_in, L)``,
    ``weight`` ``(C_in, C_out / groups, k)``; everything else as in :func:`conv_transpose2d`."""
    return _conv_transpose_nd(input, weight, bias, stride, padding, output_padding, groups, dilation, algo, 1)


def conv_transpose3d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0, output_padding: IntOrTuple = 0,
                     groups: int = 1, dilation: IntOrTuple = 1, algo: str = "auto") -> torch.Tensor:
    """3-D transposed convolution through the FFT, a drop-in for
    ``torch.nn.functional.conv_transpose3d``; ``input`` is ``(N, C_in, D, H, W)`` or
    ``(C_in, D, H, W)``, ``weight`` ``(C_in, C_out / groups, kD, kH, kW)``; everything else
    as in :func:`conv_transpose2d`. The FFT path runs the operator's input-gradient op on
    the depth-folded problem (``fftconv_ext/depth_fold.py``)."""
    return _conv_transpose_nd(input, weight, bias, stride, padding, output_padding, groups, dilation, algo, 3)
