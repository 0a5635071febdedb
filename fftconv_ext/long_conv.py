"""long_conv1d: the long 1-D convolution of state-space and long-convolution
models (S4, SGConv, Hyena), through the fused FFT operator."""
from __future__ import annotations

from typing import Optional

import torch

from . import _C, _ops  # noqa: F401  (registers the ops)
from .arguments import ConvArgumentError
from ._shapes import autocast_dtype, restore, upcast
from .onnx_export import exporting_to_onnx, long_conv1d_direct



def long_conv1d(u: torch.Tensor, k: torch.Tensor, D: Optional[torch.Tensor] = None,
                causal: bool = True) -> torch.Tensor:
    """Per-channel convolution of a long sequence with a long kernel.

    Args:
        u: ``(B, C, L)`` input.
        k: ``(C, Lk)`` kernel, ``Lk <= L`` (a shorter kernel is zero-extended).
        D: optional ``(C,)`` skip term, adding ``D * u``.
        causal: ``True``: ``y[t] = sum_{s<=t} k[s] u[t-s]`` (linear convolution, first L
            outputs); ``False``: circular convolution over the period L.

    Any L; the FFT length is L + Lk - 1 rounded up to an even 2,3,5,7-smooth size
    (causal) or L (circular). Differentiable in u, k and D; float16/bfloat16 are
    computed in float32 and returned in the input dtype. NaN/Inf in u or k are
    placed exactly where the direct convolution (F.conv1d) puts them, forward
    and backward (that call runs the direct convolution instead of the FFT).
    Registered as ``torch.ops.fftconv.long_conv1d``.
    """
    for name, t in (("u", u), ("k", k)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"long_conv1d: {name} must be a Tensor, got {type(t).__name__}")
    if u.dim() != 3:
        raise ConvArgumentError(f"long_conv1d: u must be 3-D (B, C, L), got shape {tuple(u.shape)}")
    if k.dim() != 2 or k.shape[0] != u.shape[1]:
        raise ConvArgumentError(f"long_conv1d: k must be (C, Lk) with C = {u.shape[1]}, got {tuple(k.shape)}")
    if not 1 <= k.shape[1] <= u.shape[2]:
        raise ConvArgumentError(f"long_conv1d: kernel length Lk = {k.shape[1]} must be in [1, L = {u.shape[2]}]")
    mixed_ok = autocast_dtype(u.device) is not None  # the op casts under torch.autocast, as conv1d does
    if not u.is_floating_point() or not k.is_floating_point() or (k.dtype != u.dtype and not mixed_ok):
        raise ConvArgumentError(f"long_conv1d: u and k must share one floating dtype, got {u.dtype} and {k.dtype}")
    if k.device != u.device:
        raise ConvArgumentError(f"long_conv1d: k is on device {k.device} but u is on device {u.device}")
    if D is not None:
        if not isinstance(D, torch.Tensor) or D.dim() != 1 or D.shape[0] != u.shape[1]:
            raise ConvArgumentError(f"long_conv1d: D must be a (C,) = ({u.shape[1]},) tensor, got "
                                    f"{tuple(D.shape) if isinstance(D, torch.Tensor) else type(D).__name__}")
        if (D.dtype != u.dtype and not (mixed_ok and D.is_floating_point())) or D.device != u.device:
            raise ConvArgumentError("long_conv1d: D must have the dtype and device of u")
    if u.device.type == "cuda" and not _C.built_with_cuda():
        raise RuntimeError("long_conv1d: u is on CUDA but fftconv_ext was built without CUDA")
    if exporting_to_onnx():  # as ONNX operations (onnx_export.py)
        return long_conv1d_direct(u, k, D, bool(causal))
    if mixed_ok:  # the op's autocast kernel casts u, k and D to the region's dtype
        return torch.ops.fftconv.long_conv1d(u, k, D, bool(causal))
    out_dtype = u.dtype
    u, k, D = upcast(u, k, D)  # float16/bfloat16: computed in float32
    return restore(torch.ops.fftconv.long_conv1d(u, k, D, bool(causal)), out_dtype)
