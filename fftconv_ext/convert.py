"""One-call conversion of an existing model's large-kernel convolutions to the
FFT layers, and back. Weights are untouched: the new modules hold the same
Parameter objects (of the copy, when ``inplace=False``).
"""
from __future__ import annotations

import copy
import logging
from typing import List, Tuple

from torch import nn

from .nn import FFTConv1d, FFTConv2d

logger = logging.getLogger("fftconv_ext")

_TO_FFT = {nn.Conv1d: FFTConv1d, nn.Conv2d: FFTConv2d}
_TO_TORCH = {FFTConv1d: nn.Conv1d, FFTConv2d: nn.Conv2d}


def _rebuild(module: nn.Module, cls, **extra) -> nn.Module:
    new = cls(module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
              padding=module.padding, dilation=module.dilation, groups=module.groups,
              bias=module.bias is not None, padding_mode=module.padding_mode,
              device="meta", **extra)  # no allocation: the parameters are moved over below
    new.weight = module.weight
    new.bias = module.bias
    new.train(module.training)
    for name, hook in module._forward_hooks.items():  # keep user hooks
        new._forward_hooks[name] = hook
    for name, hook in module._forward_pre_hooks.items():
        new._forward_pre_hooks[name] = hook
    return new


def _swap(model: nn.Module, mapping, predicate, extra) -> Tuple[nn.Module, List[str]]:
    swapped = []
    if type(model) in mapping and predicate(model):  # the model itself is a convolution
        return _rebuild(model, mapping[type(model)], **extra), [""]
    for name, child in list(model.named_modules()):
        for cname, sub in list(child.named_children()):
            if type(sub) in mapping and predicate(sub):
                setattr(child, cname, _rebuild(sub, mapping[type(sub)], **extra))
                swapped.append(f"{name}.{cname}" if name else cname)
    return model, swapped


def convert(model: nn.Module, min_kernel_size: int = 7, inplace: bool = False, algo: str = "auto") -> nn.Module:
    """Replace every ``nn.Conv1d``/``nn.Conv2d`` whose kernel is at least
    ``min_kernel_size`` in some dimension by :class:`FFTConv1d`/:class:`FFTConv2d`
    with the same weights, device and dtype.

    Subclasses of the torch convolutions (which may change their behaviour) are
    left alone, as is everything else. With ``inplace=False`` (default) the
    original model is untouched and a converted deep copy is returned. The names
    of the swapped modules are logged (logger ``"fftconv_ext"``, level INFO) and
    kept in ``model.fftconv_converted``.
    """
    if min_kernel_size < 1:
        raise ValueError(f"convert: min_kernel_size must be >= 1, got {min_kernel_size}")
    if not inplace:
        model = copy.deepcopy(model)
    model, swapped = _swap(model, _TO_FFT, lambda m: max(m.kernel_size) >= min_kernel_size, {"algo": algo})
    logger.info("fftconv_ext.convert: %d convolution(s) now use the FFT: %s", len(swapped), swapped)
    model.fftconv_converted = swapped
    return model


def revert(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Turn every FFTConv1d/FFTConv2d back into a plain nn.Conv1d/nn.Conv2d (same weights)."""
    if not inplace:
        model = copy.deepcopy(model)
    model, swapped = _swap(model, _TO_TORCH, lambda m: True, {})
    logger.info("fftconv_ext.revert: %d convolution(s) back to torch: %s", len(swapped), swapped)
    if hasattr(model, "fftconv_converted"):
        del model.fftconv_converted
    return model
