"""fourier_mix: FNet-style token mixing, Re(FFT2(x)) over the last two dimensions."""
from __future__ import annotations

import torch

from . import _C, _ops  # noqa: F401  (registers the ops)
from .onnx_export import exporting_to_onnx, fourier_mix_matmul

_NORMS = ("backward", "ortho", "forward")


def fourier_mix(x: torch.Tensor, norm: str = "backward") -> torch.Tensor:
    """Real part of the 2-D DFT of ``x`` over its last two dimensions.

    Equal to ``torch.fft.fft2(x, norm=norm).real`` (FNet's mixing layer over
    ``(..., tokens, hidden)``), computed with real-input symmetry: one
    real-to-complex pass along the last dimension, one complex pass along the
    one before, and the real part written out and mirrored. No full complex
    spectrum is built; any lengths, including primes (224/4 squared patches plus
    a CLS token = 3137 tokens).

    Args:
        x: real tensor ``(..., N, D)``, any strides; float16/bfloat16 are
            computed in float32 and returned in their own dtype.
        norm: ``"backward"`` (no scaling, FNet's choice), ``"ortho"``
            (``1/sqrt(N*D)``) or ``"forward"`` (``1/(N*D)``), as in ``torch.fft``.

    Returns:
        A new contiguous tensor of the shape and dtype of ``x``.

    Differentiable; the operator is self-adjoint, so its gradient is
    ``fourier_mix(grad, norm)``. Non-finite values: like any DFT, one NaN or
    Inf in a ``(N, D)`` plane makes every output of that plane non-finite
    (as in ``torch.fft.fft2``); other planes are unaffected. Registered as
    ``torch.ops.fftconv.fourier_mix``.
    """
    # Shape, dtype and norm values are checked by the op itself (fourier_mix.cpp),
    # raising ValueError/TypeError; here only what the op's schema cannot say.
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"fourier_mix: x must be a Tensor, got {type(x).__name__}")
    if not isinstance(norm, str):
        raise TypeError(f"fourier_mix: norm must be one of {_NORMS}, got {norm!r}")
    if x.device.type == "cuda" and not _C.built_with_cuda():
        raise RuntimeError("fourier_mix: x is on CUDA but fftconv_ext was built without CUDA")
    if exporting_to_onnx():  # as ONNX operations (onnx_export.py)
        if norm not in _NORMS:
            raise ValueError(f"fourier_mix: norm must be one of {_NORMS}, got {norm!r}")
        return fourier_mix_matmul(x, norm)
    return torch.ops.fftconv.fourier_mix(x, norm)
