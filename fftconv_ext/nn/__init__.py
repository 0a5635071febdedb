"""Modules of fftconv_ext."""
from .conv import FFTConv1d, FFTConv2d, FFTConv3d
from .fourier_mix import FourierMix
from .s4d import S4DConv, S4DKernel
from .sgconv import LongConv2d, SGConv1d
from .transposed import FFTConvTranspose1d, FFTConvTranspose2d, FFTConvTranspose3d

__all__ = ["FFTConv1d", "FFTConv2d", "FFTConv3d", "FFTConvTranspose1d", "FFTConvTranspose2d",
           "FFTConvTranspose3d", "S4DKernel", "S4DConv", "SGConv1d", "LongConv2d", "FourierMix"]
