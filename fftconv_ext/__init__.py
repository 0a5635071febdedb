"""fftconv_ext: fast large-kernel and global convolutions through a fused FFT operator.

    >>> import fftconv_ext
    >>> y = fftconv_ext.conv2d(x, w, padding="same", groups=x.shape[1])

The operators live in ``torch.ops.fftconv``; :mod:`fftconv_ext.functional`
is the ``torch.nn.functional``-shaped surface over them.
"""
import torch  # noqa: F401  (loads libtorch before the extension)

from . import _C  # noqa: F401  (registers torch.ops.fftconv.*)
from . import _ops  # noqa: F401
from .functional import ConvArgumentError, conv1d, conv2d

__version__ = "0.1.0"

__all__ = ["conv1d", "conv2d", "ConvArgumentError", "built_with_cuda", "__version__"]


def built_with_cuda() -> bool:
    """True when the compiled extension contains the CUDA/cuFFT kernels."""
    return bool(_C.built_with_cuda())
