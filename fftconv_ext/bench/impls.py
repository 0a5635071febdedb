"""The implementations the benchmark times, each as a factory
``make(x, w, b, pad, groups) -> callable`` for one depthwise 'same' layer, or
None when the implementation is not available here.
"""
from __future__ import annotations

import importlib.util
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F

import fftconv_ext
from .baselines import BestFFTComposition, naive_fft_conv2d

Factory = Callable[..., Optional[Callable[[], torch.Tensor]]]


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _ours(algo):
    def make(x, w, b, pad, groups):
        return lambda: fftconv_ext.conv2d(x, w, b, padding=pad, groups=groups, algo=algo)
    return make


def _torch_direct(x, w, b, pad, groups):
    return lambda: F.conv2d(x, w, b, padding=pad, groups=groups)


def _naive(x, w, b, pad, groups):
    return lambda: naive_fft_conv2d(x, w, b, pad, groups)


def _best_composition(two_d: bool = False, only: str | None = None, whole_batch: bool = False):
    """only: the device type the variant runs on (None: both)."""
    def make(x, w, b, pad, groups):
        if groups != x.shape[1] or w.shape[0] != x.shape[1] or (only and x.device.type != only):
            return None
        best = BestFFTComposition(chunk=x.shape[0] * x.shape[1] if whole_batch else None, two_d=two_d)
        return lambda: best(x, w, b, pad)
    return make


def _fft_conv_pytorch(x, w, b, pad, groups):
    if not _has("fft_conv_pytorch"):
        return None
    from fft_conv_pytorch import fft_conv
    return lambda: fft_conv(x, w, b, padding=pad, groups=groups)


def _torch_fftconv(x, w, b, pad, groups):
    if not _has("torch_fftconv"):
        return None
    from torch_fftconv import fft_conv2d
    return lambda: fft_conv2d(x, w, b, padding=pad, groups=groups)


def _scipy(method):
    def make(x, w, b, pad, groups):
        if x.device.type != "cpu" or not _has("scipy") or groups != x.shape[1]:
            return None
        import numpy as np
        from scipy import signal
        xn, wn = x.numpy(), w[:, 0].numpy()[:, ::-1, ::-1][None]  # correlation = convolution with the flipped kernel
        fn = signal.fftconvolve if method == "fftconvolve" else signal.oaconvolve
        bias = None if b is None else b.numpy()[None, :, None, None]

        def run():
            y = fn(xn, wn, mode="same", axes=(2, 3))
            return torch.from_numpy(y + bias if bias is not None else y)
        return run
    return make


def _cupy(x, w, b, pad, groups):
    if x.device.type != "cuda" or not _has("cupyx") or groups != x.shape[1]:
        return None
    import cupy
    from cupyx.scipy import signal
    xc = cupy.asarray(x)
    wc = cupy.asarray(w[:, 0].flip(-1, -2).contiguous())[None]
    bc = None if b is None else cupy.asarray(b)[None, :, None, None]

    def run():
        y = signal.fftconvolve(xc, wc, mode="same", axes=(2, 3))
        return torch.as_tensor(y + bc if bc is not None else y, device=x.device)
    return run


FORWARD: Dict[str, Factory] = {
    "fftconv_ext": _ours("fft"),
    "fftconv_ext auto": _ours("auto"),
    # auto's direct path: F.conv2d, with wide zero padding applied first on the CPU (problem.py)
    "fftconv_ext direct": _ours("direct"),
    "F.conv2d": _torch_direct,
    "best torch.fft": _best_composition(),
    # "best torch.fft" ratios use the fastest of the variants: on CUDA also the
    # 2-D cuFFT one; on the CPU also the whole batch at once (no chunk loop,
    # whose per-chunk calls dominate on small planes)
    "best torch.fft 2-D": _best_composition(two_d=True, only="cuda"),
    "best torch.fft whole batch": _best_composition(only="cpu", whole_batch=True),
    "naive torch.fft": _naive,
    "fft-conv-pytorch": _fft_conv_pytorch,
    "torch-fftconv": _torch_fftconv,
    "scipy fftconvolve": _scipy("fftconvolve"),
    "scipy oaconvolve": _scipy("oaconvolve"),
    "cupyx fftconvolve": _cupy,
}

# forward + backward (input, weight and bias gradients) through autograd
BACKWARD = ("fftconv_ext", "F.conv2d", "best torch.fft", "best torch.fft 2-D", "best torch.fft whole batch")

# implementations whose results are checked and timed in the default run
DEFAULT = ("fftconv_ext", "fftconv_ext auto", "fftconv_ext direct", "F.conv2d", "best torch.fft", "best torch.fft 2-D",
           "best torch.fft whole batch", "naive torch.fft",
           "fft-conv-pytorch", "torch-fftconv", "cupyx fftconvolve")
