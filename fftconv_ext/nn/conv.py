"""Drop-in nn.Conv1d / nn.Conv2d / nn.Conv3d whose forward runs fftconv_ext.conv1d / conv2d / conv3d.

Same constructor, parameter names, initialisation and state_dict as the torch
classes (they are subclasses), plus ``algo``. The kernel spectrum is cached
by the operator and can never be stale: the cache compares weight values
exactly with a stored copy (on CPU and CUDA), so in-place edits, edits through
``.data``, optimizer steps, load_state_dict and .to() all invalidate it.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import functional as FX
from .scripting import NotScriptable


class _FFTConvMixin(NotScriptable):
    """The FFT layers' part: ``algo`` and a ``_conv_forward`` through the functional op."""
    _dim = 0
    _revertible = True

    def __init__(self, *args, algo: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        if algo not in FX.ALGOS:
            raise ValueError(f"{type(self).__name__}: algo must be one of {FX.ALGOS}, got {algo!r}")
        self.algo = algo

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias):
        conv = (FX.conv1d, FX.conv2d, FX.conv3d)[self._dim - 1]
        return conv(input, weight, bias, self.stride, self.padding, self.dilation, self.groups,
                    padding_mode=self.padding_mode, algo=self.algo)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", algo={self.algo!r}"


class FFTConv1d(_FFTConvMixin, nn.Conv1d):
    """nn.Conv1d computed by the FFT operator (see :func:`fftconv_ext.conv1d`).

    Args: those of ``nn.Conv1d``, plus ``algo`` ('auto', 'fft' or 'direct').
    """
    _dim = 1


class FFTConv2d(_FFTConvMixin, nn.Conv2d):
    """nn.Conv2d computed by the FFT operator (see :func:`fftconv_ext.conv2d`).

    Args: those of ``nn.Conv2d``, plus ``algo`` ('auto', 'fft' or 'direct').

    Example::

        >>> conv = FFTConv2d(64, 64, 31, padding=15, groups=64)
        >>> conv.load_state_dict(torch.nn.Conv2d(64, 64, 31, padding=15, groups=64).state_dict())
    """
    _dim = 2


class FFTConv3d(_FFTConvMixin, nn.Conv3d):
    """nn.Conv3d computed by the FFT operator (see :func:`fftconv_ext.conv3d`).

    Args: those of ``nn.Conv3d``, plus ``algo`` ('auto', 'fft' or 'direct').

    Example::

        >>> conv = FFTConv3d(48, 48, 21, padding=10, groups=48)
        >>> conv.load_state_dict(torch.nn.Conv3d(48, 48, 21, padding=10, groups=48).state_dict())
    """
    _dim = 3
