"""algo="auto" inside torch.compile: the choice made when the graph runs, not while it is traced.

Dynamo traces Python with symbolic sizes that look like ints to the traced code, so a choice
computed from them while tracing is no constant: the graph would break there, and with dynamic
shapes recompile for every size. Under Dynamo (not under export, which traces with example
values and keeps the operator that eager calls) an auto convolution becomes one opaque operator,
``torch.ops.fftconv.conv_auto``, whose kernel is the eager call itself: one graph serves every
size, and each size gets the choice eager makes for it (the cost model is a pure function of the
sizes, so the same in every process and in eager mode).

Its gradient is ``conv_auto_backward``, whose kernel differentiates the eager call (the forward
is recomputed there: the forward's own autograd record does not cross the operator's boundary);
gradients of gradients are not supported under torch.compile.
"""
from __future__ import annotations

import contextlib
from typing import List, Optional, Tuple

import torch

from .arguments import int_tuple


def _padding_arg(padding_str: str, padding: List[int]):
    return padding_str if padding_str else tuple(padding)


def _call(x, weight, bias, dim, transposed, stride, padding_str, padding, output_padding, dilation, groups,
          padding_mode, algo):
    if transposed:
        from .transposed import conv_transpose1d, conv_transpose2d, conv_transpose3d
        conv_t = (conv_transpose1d, conv_transpose2d, conv_transpose3d)[dim - 1]
        return conv_t(x, weight, bias, tuple(stride), tuple(padding), tuple(output_padding), groups, tuple(dilation),
                      algo=algo)
    from .functional import conv1d, conv2d, conv3d
    conv = (conv1d, conv2d, conv3d)[dim - 1]
    return conv(x, weight, bias, tuple(stride), _padding_arg(padding_str, padding), tuple(dilation), groups,
                padding_mode=padding_mode, algo=algo)


@torch.library.custom_op("fftconv::conv_auto", mutates_args=())
def conv_auto(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], dim: int, transposed: bool,
              stride: List[int], padding_str: str, padding: List[int], output_padding: List[int],
              dilation: List[int], groups: int, padding_mode: str) -> torch.Tensor:
    """conv{dim}d (or conv_transpose{dim}d) of a batched x with algo="auto", chosen at run
    time; padding is padding_str ('same', 'valid') when not empty, else the ints."""
    with torch.no_grad():
        y = _call(x, weight, bias, dim, transposed, stride, padding_str, padding, output_padding, dilation, groups,
                  padding_mode, "auto")
    return y.clone() if y._base is not None else y  # an operator's output owns its storage


@conv_auto.register_fake
def _(x, weight, bias, dim, transposed, stride, padding_str, padding, output_padding, dilation, groups, padding_mode):
    if transposed:  # the output size by its formula (the FFT path's arithmetic would guard on sizes)
        from .arguments import memory_format_of
        from .transposed import transposed_output_length
        out = [transposed_output_length(n, k, p, op, s, d) for n, k, p, op, s, d in
               zip(x.shape[2:], weight.shape[2:], padding, output_padding, stride, dilation)]
        return x.new_empty([x.shape[0], weight.shape[1] * groups, *out]).contiguous(
            memory_format=memory_format_of(x))
    # the FFT path's fake kernels give the shape and memory format both paths produce
    return _call(x, weight, bias, dim, transposed, stride, padding_str, padding, output_padding, dilation, groups,
                 padding_mode, "fft")


@contextlib.contextmanager
def _autograd_inside_operator():
    """Autograd for the calls made inside an operator's kernel: the dispatcher runs a kernel below
    the autograd keys (excluded for everything it calls), which the recomputation needs back."""
    keys = torch._C.DispatchKey
    exclude = torch._C._dispatch_tls_local_exclude_set()
    for key in (keys.AutogradFunctionality, keys.AutogradOther, keys.AutogradNestedTensor, keys.ADInplaceOrView):
        exclude = exclude.remove(key)
    with torch._C._ForceDispatchKeyGuard(torch._C._dispatch_tls_local_include_set(), exclude):
        yield


@torch.library.custom_op("fftconv::conv_auto_backward", mutates_args=())
def conv_auto_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, dim: int, transposed: bool,
                       stride: List[int], padding_str: str, padding: List[int], output_padding: List[int],
                       dilation: List[int], groups: int, padding_mode: str, mask: List[bool]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input, weight, bias) gradients of conv_auto; those mask leaves out are zeros."""
    wanted = [t for t, m in zip((x, weight), mask) if m]
    grads = []
    if wanted:
        with _autograd_inside_operator(), torch.enable_grad():
            xi = x.detach().requires_grad_(mask[0])
            wi = weight.detach().requires_grad_(mask[1])
            y = _call(xi, wi, None, dim, transposed, stride, padding_str, padding, output_padding, dilation, groups,
                      padding_mode, "auto")
            grads = list(torch.autograd.grad(y, [t for t, m in zip((xi, wi), mask) if m], grad))
    gx = grads.pop(0) if mask[0] else torch.zeros_like(x)
    gw = grads.pop(0) if mask[1] else torch.zeros_like(weight)
    gb = grad.sum(dim=[0] + list(range(2, grad.dim())))
    return gx.contiguous(), gw.contiguous(), gb


@conv_auto_backward.register_fake
def _(grad, x, weight, dim, transposed, stride, padding_str, padding, output_padding, dilation, groups, padding_mode,
      mask):
    return torch.empty_like(x, memory_format=torch.contiguous_format), \
        torch.empty_like(weight, memory_format=torch.contiguous_format), grad.new_empty(grad.shape[1])


def _setup_context(ctx, inputs, output):
    x, weight, bias, *args = inputs
    ctx.save_for_backward(x, weight)
    ctx.args = tuple(args)
    ctx.has_bias = bias is not None


def _backward(ctx, grad):
    x, weight = ctx.saved_tensors
    mask = [bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1])]
    gx, gw, gb = torch.ops.fftconv.conv_auto_backward(grad.contiguous(), x, weight, *ctx.args, mask)
    return (gx if mask[0] else None, gw if mask[1] else None,
            gb if ctx.has_bias and ctx.needs_input_grad[2] else None) + (None,) * len(ctx.args)


conv_auto.register_autograd(_backward, setup_context=_setup_context)


def applies(algo, onnx: bool) -> bool:
    """Whether an auto call is to become conv_auto: under Dynamo, not exporting, not measuring."""
    from . import backends
    return (algo == "auto" and not onnx and torch.compiler.is_dynamo_compiling() and
            not torch.compiler.is_exporting() and not backends.benchmark)


def call(x: torch.Tensor, weight, bias, dim: int, stride, padding, dilation, groups: int,
         padding_mode: str) -> torch.Tensor:
    """conv_auto of a correlation, with the functional API's (checked) arguments; x batched."""
    padding_str = padding if isinstance(padding, str) else ""
    ints = [] if padding_str else list(int_tuple(padding, dim, "padding"))
    return torch.ops.fftconv.conv_auto(x, weight, bias, dim, False, list(stride), padding_str, ints, [0] * dim,
                                       list(dilation), groups, padding_mode)


def call_transposed(x: torch.Tensor, weight, bias, dim: int, stride, padding, output_padding, dilation,
                    groups: int) -> torch.Tensor:
    """conv_auto of a transposed convolution (checked arguments); x batched."""
    return torch.ops.fftconv.conv_auto(x, weight, bias, dim, True, list(stride), "",
                                       list(int_tuple(padding, dim, "padding")),
                                       list(int_tuple(output_padding, dim, "output_padding")), list(dilation),
                                       groups, "zeros")
