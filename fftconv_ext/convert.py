"""One-call conversion of an existing model's large-kernel convolutions to the
FFT layers, and back.

A convolution is converted in place by giving it the FFT layer's class (a
subclass of the torch one that only changes how the convolution is computed):
its parameters, buffers, hooks of every kind (forward and pre-forward, with
and without kwargs, full backward, state-dict), parametrizations and the
old hook-based ``spectral_norm``/``weight_norm`` all stay, and a module used in
several places stays one module.
"""
from __future__ import annotations

import copy
import logging
from typing import List

from torch import nn
from torch.nn.utils import parametrize

from .nn import FFTConv1d, FFTConv2d, FFTConv3d, FFTConvTranspose1d, FFTConvTranspose2d, FFTConvTranspose3d

logger = logging.getLogger("fftconv_ext")

_TO_FFT = {nn.Conv1d: FFTConv1d, nn.Conv2d: FFTConv2d, nn.Conv3d: FFTConv3d,
           nn.ConvTranspose1d: FFTConvTranspose1d, nn.ConvTranspose2d: FFTConvTranspose2d,
           nn.ConvTranspose3d: FFTConvTranspose3d}
_TO_TORCH = {fft: torch_cls for torch_cls, fft in _TO_FFT.items()}


def _conv_type(module: nn.Module, mapping):
    """The torch (or FFT) convolution class module is, itself or under torch.nn.utils.parametrize
    (which gives a parametrized module a class of its own, derived from the original), or None."""
    cls = type(module)
    if cls in mapping:
        return cls
    if parametrize.is_parametrized(module) and len(cls.__bases__) == 1 and cls.__bases__[0] in mapping:
        return cls.__bases__[0]
    return None


def _target_class(module: nn.Module, target: type) -> type:
    """target, or for a parametrized module a class of its own derived from target with the
    module's parametrized properties (as torch.nn.utils.parametrize makes one per module)."""
    cls = type(module)
    if parametrize.is_parametrized(module) and cls not in _TO_FFT and cls not in _TO_TORCH:
        body = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
        return type(f"Parametrized{target.__name__}", (target,), body)
    return target


def _swap(model: nn.Module, mapping, predicate, attrs) -> List[str]:
    """Give every matching module (each once, shared ones included) its new class in place:
    parameters, buffers, hooks of every kind, parametrizations and sharing all stay as they are."""
    swapped = []
    for name, module in model.named_modules(remove_duplicate=True):
        base = _conv_type(module, mapping)
        if base is None or not predicate(module):
            continue
        module.__class__ = _target_class(module, mapping[base])
        for key, value in attrs.items():
            if value is None:
                module.__dict__.pop(key, None)
            else:
                setattr(module, key, value)
        swapped.append(name)
    return swapped


def _copy(model: nn.Module, fname: str) -> nn.Module:
    try:
        return copy.deepcopy(model)
    except RuntimeError as e:  # e.g. the old hook-based weight_norm/spectral_norm after a forward
        raise RuntimeError(f"{fname}: the model cannot be deep-copied ({e}); pass inplace=True to "
                           "convert it as it is") from e


def convert(model: nn.Module, min_kernel_size: int = 7, inplace: bool = False, algo: str = "auto") -> nn.Module:
    """Replace every ``nn.Conv1d/2d/3d`` and ``nn.ConvTranspose1d/2d/3d`` whose kernel is at
    least ``min_kernel_size`` in some dimension by its FFT layer (:class:`FFTConv1d`,
    :class:`FFTConv2d`, :class:`FFTConv3d`, :class:`FFTConvTranspose1d`,
    :class:`FFTConvTranspose2d`, :class:`FFTConvTranspose3d`) with the same weights, device
    and dtype.

    Subclasses of the torch convolutions (which may change their behaviour) are
    left alone, as is everything else. With ``inplace=False`` (default) the
    original model is untouched and a converted deep copy is returned. The names
    of the swapped modules are logged (logger ``"fftconv_ext"``, level INFO) and
    kept in ``model.fftconv_converted``.
    """
    if min_kernel_size < 1:
        raise ValueError(f"convert: min_kernel_size must be >= 1, got {min_kernel_size}")
    if algo not in ("auto", "fft", "direct"):
        raise ValueError(f"convert: algo must be 'auto', 'fft' or 'direct', got {algo!r}")
    if not inplace:
        model = _copy(model, "convert")
    swapped = _swap(model, _TO_FFT, lambda m: max(m.kernel_size) >= min_kernel_size, {"algo": algo})
    logger.info("fftconv_ext.convert: %d convolution(s) now use the FFT: %s", len(swapped), swapped)
    model.fftconv_converted = swapped
    return model


def revert(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Turn every FFT layer back into its plain torch class (same weights),
    keeping everything the module carries, as convert() does."""
    if not inplace:
        model = _copy(model, "revert")
    swapped = _swap(model, _TO_TORCH, lambda m: True, {"algo": None})
    logger.info("fftconv_ext.revert: %d convolution(s) back to torch: %s", len(swapped), swapped)
    if hasattr(model, "fftconv_converted"):
        del model.fftconv_converted
    return model
