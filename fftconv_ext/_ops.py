"""Fake (meta) kernels and autograd formulas of the torch.ops.fftconv ops.

The three convolution ops are linear in each argument, and each one's
derivative is another of the three (all computed by the same FFT pipeline):

    y  = forward(x, w)            dy -> dx = grad_input(dy, w), dw = grad_weight(dy, x)
    gx = grad_input(g, w)         dgx -> dg = forward(dgx, w),  dw = grad_weight(g, dgx)
    gw = grad_weight(g, x)        dgw -> dg = forward(x, dgw),  dx = grad_input(g, dgw)

so second derivatives come for free and the whole set works under
torch.compile. ``backward(g, x, w) = (grad_input(g, w), grad_weight(g, x))``
computes the two first derivatives in one pass (the output gradient is
transformed once); its own derivatives are rows of the table.
"""
from __future__ import annotations

import torch

from . import _C  # noqa: F401  (loads the library that registers the ops)
from ._shapes import output_length
from torch.utils.flop_counter import conv_flop_count, register_flop_formula

_ops = torch.ops.fftconv


def output_size(input_size, weight_size, stride, padding, dilation):
    """(N, C_out, H_out, W_out) of a 4-D correlation; padding is (top, bottom, left, right)."""
    return (
        input_size[0],
        weight_size[0],
        output_length(input_size[2], weight_size[2], padding[0], padding[1], stride[0], dilation[0]),
        output_length(input_size[3], weight_size[3], padding[2], padding[3], stride[1], dilation[1]),
    )


@torch.library.register_fake("fftconv::conv2d_forward")
def _forward_fake(input, weight, bias, stride, padding, dilation, groups, circular):
    torch._check(input.dim() == 4, lambda: "fftconv: input must be 4-D")
    torch._check(weight.dim() == 4, lambda: "fftconv: weight must be 4-D")
    return input.new_empty(output_size(input.shape, weight.shape, stride, padding, dilation))


@torch.library.register_fake("fftconv::conv2d_grad_input")
def _grad_input_fake(grad_output, weight, input_size, stride, padding, dilation, groups, circular):
    return grad_output.new_empty(input_size)


@torch.library.register_fake("fftconv::conv2d_grad_weight")
def _grad_weight_fake(grad_output, input, weight_size, stride, padding, dilation, groups, circular):
    return grad_output.new_empty(weight_size)


def _conv_args(ctx):
    return ctx.stride, ctx.padding, ctx.dilation, ctx.groups, ctx.circular


def _save_conv_args(ctx, stride, padding, dilation, groups, circular):
    ctx.stride, ctx.padding, ctx.dilation = list(stride), list(padding), list(dilation)
    ctx.groups, ctx.circular = groups, circular


# forward(x, w, b) ------------------------------------------------------------
def _forward_setup(ctx, inputs, output):
    input, weight, bias, stride, padding, dilation, groups, circular = inputs
    ctx.save_for_backward(input, weight)
    ctx.has_bias = bias is not None
    _save_conv_args(ctx, stride, padding, dilation, groups, circular)


def _forward_backward(ctx, grad):
    input, weight = ctx.saved_tensors
    args = _conv_args(ctx)
    grad = grad.contiguous()
    gx = gw = gb = None
    if ctx.needs_input_grad[0] and ctx.needs_input_grad[1]:
        gx, gw = _ops.conv2d_backward(grad, input, weight, *args)  # grad_output transformed once
    elif ctx.needs_input_grad[0]:
        gx = _ops.conv2d_grad_input(grad, weight, list(input.shape), *args)
    elif ctx.needs_input_grad[1]:
        gw = _ops.conv2d_grad_weight(grad, input, list(weight.shape), *args)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        gb = grad.sum((0, 2, 3))
    return gx, gw, gb, None, None, None, None, None


torch.library.register_autograd(
    "fftconv::conv2d_forward", _forward_backward, setup_context=_forward_setup)


# grad_input(g, w) ------------------------------------------------------------
def _grad_input_setup(ctx, inputs, output):
    grad_output, weight, input_size, stride, padding, dilation, groups, circular = inputs
    ctx.save_for_backward(grad_output, weight)
    _save_conv_args(ctx, stride, padding, dilation, groups, circular)


def _grad_input_backward(ctx, ggx):
    grad_output, weight = ctx.saved_tensors
    args = _conv_args(ctx)
    ggx = ggx.contiguous()
    d_g = d_w = None
    if ctx.needs_input_grad[0]:
        d_g = _ops.conv2d_forward(ggx, weight, None, *args)
    if ctx.needs_input_grad[1]:
        d_w = _ops.conv2d_grad_weight(grad_output, ggx, list(weight.shape), *args)
    return d_g, d_w, None, None, None, None, None, None


torch.library.register_autograd(
    "fftconv::conv2d_grad_input", _grad_input_backward, setup_context=_grad_input_setup)


# grad_weight(g, x) -----------------------------------------------------------
def _grad_weight_setup(ctx, inputs, output):
    grad_output, input, weight_size, stride, padding, dilation, groups, circular = inputs
    ctx.save_for_backward(grad_output, input)
    _save_conv_args(ctx, stride, padding, dilation, groups, circular)


def _grad_weight_backward(ctx, ggw):
    grad_output, input = ctx.saved_tensors
    args = _conv_args(ctx)
    ggw = ggw.contiguous()
    d_g = d_x = None
    if ctx.needs_input_grad[0]:
        d_g = _ops.conv2d_forward(input, ggw, None, *args)
    if ctx.needs_input_grad[1]:
        d_x = _ops.conv2d_grad_input(grad_output, ggw, list(input.shape), *args)
    return d_g, d_x, None, None, None, None, None, None


torch.library.register_autograd(
    "fftconv::conv2d_grad_weight", _grad_weight_backward, setup_context=_grad_weight_setup)


# backward(g, x, w) = (grad_input(g, w), grad_weight(g, x)) ------------------
@torch.library.register_fake("fftconv::conv2d_backward")
def _backward_fake(grad_output, input, weight, stride, padding, dilation, groups, circular):
    return input.new_empty(input.shape), input.new_empty(weight.shape)


def _backward_setup(ctx, inputs, output):
    grad_output, input, weight, stride, padding, dilation, groups, circular = inputs
    ctx.save_for_backward(grad_output, input, weight)
    _save_conv_args(ctx, stride, padding, dilation, groups, circular)


def _backward_backward(ctx, ggx, ggw):
    # gx = grad_input(g, w) and gw = grad_weight(g, x): the rows of the table above.
    grad_output, input, weight = ctx.saved_tensors
    args = _conv_args(ctx)
    d_g = d_x = d_w = None
    ggx = ggx.contiguous() if ggx is not None else None
    ggw = ggw.contiguous() if ggw is not None else None
    if ctx.needs_input_grad[0]:
        parts = []
        if ggx is not None:
            parts.append(_ops.conv2d_forward(ggx, weight, None, *args))
        if ggw is not None:
            parts.append(_ops.conv2d_forward(input, ggw, None, *args))
        d_g = sum(parts[1:], parts[0]) if parts else None
    if ctx.needs_input_grad[1] and ggw is not None:
        d_x = _ops.conv2d_grad_input(grad_output, ggw, list(input.shape), *args)
    if ctx.needs_input_grad[2] and ggx is not None:
        d_w = _ops.conv2d_grad_weight(grad_output, ggx, list(weight.shape), *args)
    return d_g, d_x, d_w, None, None, None, None, None


torch.library.register_autograd(
    "fftconv::conv2d_backward", _backward_backward, setup_context=_backward_setup)


# fourier_mix(x) ---------------------------------------------------------------
# Re(FFT2(x)) of a real x is C x with a symmetric real matrix C, so the
# operator is its own adjoint: the backward is fourier_mix of the gradient.
@torch.library.register_fake("fftconv::fourier_mix")
def _fourier_mix_fake(x, norm="backward"):
    torch._check(x.dim() >= 2, lambda: "fftconv.fourier_mix: x must have at least 2 dimensions")
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _fourier_mix_setup(ctx, inputs, output):
    ctx.norm = inputs[1] if len(inputs) > 1 else "backward"


def _fourier_mix_backward(ctx, grad):
    return _ops.fourier_mix(grad, ctx.norm), None


torch.library.register_autograd(
    "fftconv::fourier_mix", _fourier_mix_backward, setup_context=_fourier_mix_setup)


# FLOPs as torch.utils.flop_counter counts PyTorch's own convolution (and its
# backward) for the same problem, so a model's count does not change when it is
# converted: the direct convolution's multiply-adds, not the FFT's work.
def _swap01(shape):
    return [shape[1], shape[0]] + list(shape[2:])


@register_flop_formula(_ops.conv2d_forward)
def _forward_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


@register_flop_formula(_ops.conv2d_grad_input)
def _grad_input_flops(g_shape, w_shape, input_size, *args, out_shape=None, **kwargs) -> int:
    return conv_flop_count(g_shape, w_shape, list(input_size), transposed=True)


@register_flop_formula(_ops.conv2d_grad_weight)
def _grad_weight_flops(g_shape, x_shape, weight_size, *args, out_shape=None, **kwargs) -> int:
    return conv_flop_count(_swap01(x_shape), _swap01(g_shape), _swap01(list(weight_size)), transposed=False)


@register_flop_formula(_ops.conv2d_backward)
def _backward_flops(g_shape, x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    return (conv_flop_count(g_shape, w_shape, x_shape, transposed=True) +
            conv_flop_count(_swap01(x_shape), _swap01(g_shape), _swap01(w_shape), transposed=False))
