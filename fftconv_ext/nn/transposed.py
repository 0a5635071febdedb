"""Drop-in nn.ConvTranspose1d / 2d / 3d whose forward runs
fftconv_ext.conv_transpose1d / 2d / 3d (the operator's adjoint pipeline).

Same constructor, parameter names, initialisation and state_dict as the torch
classes (they are subclasses), plus ``algo``; ``forward(input, output_size=None)``
as theirs. The kernel spectrum is cached by the operator and validated by value,
so it is never stale.
"""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

from .. import functional as FX
from .. import transposed as TX
from .scripting import NotScriptable


class _FFTConvTransposeMixin(NotScriptable):
    """The FFT layers' part: ``algo`` and a ``forward`` through the functional op."""
    _dim = 0
    _revertible = True

    def __init__(self, *args, algo: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        if algo not in FX.ALGOS:
            raise ValueError(f"{type(self).__name__}: algo must be one of {FX.ALGOS}, got {algo!r}")
        self.algo = algo

    def forward(self, input: torch.Tensor, output_size: Optional[List[int]] = None) -> torch.Tensor:
        output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size,
                                              self._dim, self.dilation)
        fn = (TX.conv_transpose1d, TX.conv_transpose2d, TX.conv_transpose3d)[self._dim - 1]
        return fn(input, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups,
                  self.dilation, algo=self.algo)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", algo={self.algo!r}"


class FFTConvTranspose1d(_FFTConvTransposeMixin, nn.ConvTranspose1d):
    """nn.ConvTranspose1d computed by the FFT operator (see :func:`fftconv_ext.conv_transpose1d`).

    Args: those of ``nn.ConvTranspose1d``, plus ``algo`` ('auto', 'fft' or 'direct').
    """
    _dim = 1


class FFTConvTranspose2d(_FFTConvTransposeMixin, nn.ConvTranspose2d):
    """nn.ConvTranspose2d computed by the FFT operator (see :func:`fftconv_ext.conv_transpose2d`).

    Args: those of ``nn.ConvTranspose2d``, plus ``algo`` ('auto', 'fft' or 'direct').

    Example::

        >>> up = FFTConvTranspose2d(64, 64, 31, padding=15, groups=64)
        >>> up.load_state_dict(torch.nn.ConvTranspose2d(64, 64, 31, padding=15, groups=64).state_dict())
    """
    _dim = 2


class FFTConvTranspose3d(_FFTConvTransposeMixin, nn.ConvTranspose3d):
    """nn.ConvTranspose3d computed by the FFT operator (see :func:`fftconv_ext.conv_transpose3d`).

    Args: those of ``nn.ConvTranspose3d``, plus ``algo`` ('auto', 'fft' or 'direct').
    """
    _dim = 3
