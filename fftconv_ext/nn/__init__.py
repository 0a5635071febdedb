"""Modules of fftconv_ext."""
from .conv import FFTConv1d, FFTConv2d

__all__ = ["FFTConv1d", "FFTConv2d"]
