"""fftconv_ext: fast large-kernel and global convolutions through a fused FFT operator.

    >>> import fftconv_ext
    >>> y = fftconv_ext.conv2d(x, w, padding="same", groups=x.shape[1])

The operators live in ``torch.ops.fftconv``; :mod:`fftconv_ext.functional`
is the ``torch.nn.functional``-shaped surface over them, :mod:`fftconv_ext.nn`
the layers, :mod:`fftconv_ext.models` the model definitions and
:mod:`fftconv_ext.backends` the run-time settings.
"""
from typing import Optional

import torch  # noqa: F401  (loads libtorch before the extension)

from . import _C  # noqa: F401  (registers torch.ops.fftconv.*)
from . import backends  # noqa: F401  (settings; reads the FFTCONV_* start-up defaults once)
from . import _ops  # noqa: F401
from .functional import ConvArgumentError, conv1d, conv2d, conv3d
from .transposed import conv_transpose1d, conv_transpose2d, conv_transpose3d
from . import nn  # noqa: E402
from .convert import convert, revert
from .long_conv import long_conv1d
from .fourier_mix import fourier_mix

__version__ = "0.1.0"

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "long_conv1d", "fourier_mix",
           "ConvArgumentError", "convert", "revert", "nn", "models", "backends", "built_with_cuda", "set_cache_limit",
           "clear_caches", "cache_info", "library_path", "__version__"]


def __getattr__(name):
    # fftconv_ext.models after `import fftconv_ext`, imported on first use so
    # that importing the package stays fast
    if name == "models":
        import importlib
        return importlib.import_module(".models", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def library_path() -> str:
    """Path of the shared library that holds the ``torch.ops.fftconv`` operators.

    It links libtorch but not libtorch_python: a C++ program (or any process)
    that loads it, by ``dlopen`` or ``torch.ops.load_library``, gets the
    operators registered without Python. That is what an AOTInductor package or
    an exported program of a converted model needs in a C++ server
    (docs/deploy.md); a Python process gets them with ``import fftconv_ext``."""
    import glob
    import os
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")
    found = sorted(glob.glob(os.path.join(folder, "libfftconv_ops*.so")))  # libfftconv_ops.abi3.so
    if not found:
        raise FileNotFoundError(f"fftconv_ext.library_path: no operator library (libfftconv_ops*.so) in {folder}")
    return found[0]


def built_with_cuda() -> bool:
    """True when the compiled extension contains the CUDA/cuFFT kernels."""
    return bool(_C.built_with_cuda())


def set_cache_limit(entries: int, *, plans: Optional[int] = None) -> None:
    """Bound the kernel-spectrum cache to ``entries`` spectra and, on CUDA builds,
    the cuFFT plan cache to ``plans`` plans (default: ``entries`` too), least
    recently used first out. Defaults at start: 32 spectra, 4096 plans (as PyTorch's own
    cuFFT plan cache; a plan holds no work area, only cuFFT's small tables).

    0 disables caching: nothing outlives a call, and on the CPU each block of
    channel groups gets its kernel spectra made beside its chunk, so a forward
    call's extra memory stays within about its output's size (with the cache on, a
    first call also leaves the padded kernel spectrum behind, which on small
    outputs can be several times the output). The price is a kernel transform
    on every call."""
    if isinstance(entries, bool) or not isinstance(entries, int) or entries < 0:
        raise ValueError(f"set_cache_limit: entries must be a non-negative int, got {entries!r}")
    if plans is None:
        plans = entries
    if isinstance(plans, bool) or not isinstance(plans, int) or plans < 0:
        raise ValueError(f"set_cache_limit: plans must be a non-negative int, got {plans!r}")
    _C.set_cache_limits(entries, plans)


def clear_caches() -> None:
    """Drop every cached kernel spectrum and cuFFT plan (their memory is returned
    to PyTorch's allocators)."""
    _C.clear_caches()


def cache_info() -> dict:
    """``{"limit": ..., "spectra": ..., "plans": ...}``: the spectrum-cache limit and
    how many spectra and cuFFT plans are cached now."""
    limit, spectra, plans = _C.cache_info()
    return {"limit": limit, "spectra": spectra, "plans": plans}
