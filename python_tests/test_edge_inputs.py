"""Empty and degenerate inputs, and memory formats, for all six functions and both algo='fft'
and 'auto', against torch.nn.functional itself: the same output shape, dtype, memory format and
values, or an error of the same kind where F raises (a ConvArgumentError, which is a
RuntimeError, naming the argument: never an internal shape or a library error)."""
import pytest
import torch
import torch.nn.functional as F

import fftconv_ext
from fftconv_ext import ConvArgumentError

CL = {4: torch.channels_last, 5: torch.channels_last_3d}

# (function name, input shape, weight shape, keyword arguments, memory format of the input or None)
CASES = [
    ("conv1d", (1, 4, 0), (4, 1, 3), dict(padding=2, groups=4), None),         # empty spatial axis
    ("conv2d", (1, 4, 0, 8), (4, 1, 3, 3), dict(padding=2, groups=4), None),
    ("conv3d", (1, 4, 0, 8, 8), (4, 1, 3, 3, 3), dict(padding=2, groups=4), None),
    ("conv2d", (1, 0, 8, 8), (4, 0, 3, 3), dict(padding=1), None),               # no input channels
    ("conv1d", (2, 0, 9), (3, 0, 3), dict(padding=0), None),
    ("conv2d", (1, 4, 8, 8), (0, 4, 3, 3), dict(padding=1), None),               # no output channels
    ("conv3d", (1, 4, 6, 6, 6), (0, 4, 3, 3, 3), dict(padding=1), None),
    ("conv2d", (0, 4, 8, 8), (4, 4, 3, 3), dict(padding=1), None),               # empty batch
    ("conv3d", (0, 4, 6, 6, 6), (4, 1, 3, 3, 3), dict(padding=1, groups=4), None),
    ("conv_transpose1d", (1, 4, 0), (4, 1, 3), dict(padding=2, groups=4), None),
    ("conv_transpose2d", (1, 4, 0, 8), (4, 1, 3, 3), dict(padding=2, groups=4), None),
    ("conv_transpose3d", (1, 4, 0, 5, 5), (4, 1, 3, 3, 3), dict(padding=1, groups=4), None),
    ("conv_transpose2d", (1, 0, 8, 8), (0, 4, 3, 3), dict(padding=1), None),
    ("conv_transpose2d", (1, 4, 8, 8), (4, 0, 3, 3), dict(padding=1), None),
    ("conv_transpose2d", (0, 4, 8, 8), (4, 3, 3, 3), dict(padding=1), None),
    ("conv2d", (2, 4, 9, 8), (3, 4, 3, 3), dict(padding=1), "channels_last"),      # memory formats
    ("conv3d", (2, 4, 5, 6, 5), (3, 4, 3, 3, 3), dict(padding=1), "channels_last"),
    ("conv_transpose2d", (2, 4, 8, 9), (4, 3, 3, 3), dict(padding=1, stride=2), "channels_last"),
    ("conv_transpose3d", (2, 4, 5, 5, 6), (4, 3, 3, 3, 3), dict(padding=1), "channels_last"),
    ("conv_transpose1d", (2, 4, 9), (4, 3, 5), dict(padding=2), None),
]


def _layout(t):
    if t.dim() in CL and not t.is_contiguous() and t.is_contiguous(memory_format=CL[t.dim()]):
        return "channels_last"
    return "contiguous" if t.is_contiguous() else "other"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("algo", ["fft", "auto"])
@pytest.mark.parametrize("name,xs,ws,kw,fmt", CASES)
def test_edge_inputs_as_torch_nn_functional(name, xs, ws, kw, fmt, algo, dtype):
    # both dtypes: PyTorch's CPU kernels keep channels_last_3d in float32, not in float64
    g = torch.Generator().manual_seed(0)
    x = torch.randn(xs, generator=g, dtype=dtype)
    w = torch.randn(ws, generator=g, dtype=dtype)
    if fmt == "channels_last":
        x = x.contiguous(memory_format=CL[x.dim()])
    try:
        ref = getattr(F, name)(x, w, **kw)
    except RuntimeError as e:
        with pytest.raises(ConvArgumentError) as ours:
            getattr(fftconv_ext, name)(x, w, algo=algo, **kw)
        assert isinstance(ours.value, RuntimeError)
        text = str(ours.value)
        assert text.startswith(name) and ("input" in text or "weight" in text), (text, str(e))
        return
    y = getattr(fftconv_ext, name)(x, w, algo=algo, **kw)
    assert y.shape == ref.shape and y.dtype == ref.dtype
    assert _layout(y) == _layout(ref)
    if ref.numel():
        assert ((y - ref).norm() / ref.norm()).item() < (1e-12 if dtype == torch.float64 else 1e-5)
