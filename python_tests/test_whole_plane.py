"""The CUDA whole-plane pipeline (docs/design.md §13, §17) run on the host through its own
pointwise functions (cuda/whole_plane.h, shared with its kernels) and ATen's 2-D FFTs in
place of cuFFT's: its indexing and block handling checked against F.conv2d and the input
gradient in float64, without a GPU."""
import pytest
import torch
import torch.nn.functional as F

import fftconv_ext._testing as T
from conftest import rel_err

# (input, weight, stride, padding (t, b, l, r), dilation, groups)
CASES = [
    ((2, 8, 16, 16), (8, 1, 7, 7), (1, 1), (3, 3, 3, 3), (1, 1), 8),        # depthwise: the in-place product
    ((3, 6, 11, 13), (9, 2, 5, 4), (1, 1), (2, 2, 1, 2), (1, 1), 3),        # grouped, several planes per group
    ((2, 4, 12, 15), (6, 4, 3, 5), (2, 3), (1, 1, 2, 2), (2, 1), 1),        # dense, strided, dilated
    ((1, 2, 6, 7), (2, 1, 9, 11), (1, 1), (4, 4, 5, 5), (1, 1), 2),         # kernel larger than the map
    ((2, 4, 9, 10), (4, 2, 3, 3), (3, 2), (0, 1, 1, 0), (1, 3), 2),         # asymmetric padding
]


def _operands(xs, ws, groups, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*xs, generator=g, dtype=torch.float64)
    w = torch.randn(*ws, generator=g, dtype=torch.float64)
    b = torch.randn(ws[0], generator=g, dtype=torch.float64)
    return x, w, b


@pytest.mark.parametrize("blocks", [(1, 1), (2, 2), (64, 64)])
@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CASES)
def test_forward_matches_conv2d(xs, ws, stride, padding, dilation, groups, blocks):
    x, w, b = _operands(xs, ws, groups)
    y = T.whole_plane_emulate(x, w, b, list(xs), list(stride), list(padding), list(dilation), groups, False, *blocks)
    ref = F.conv2d(F.pad(x, (padding[2], padding[3], padding[0], padding[1])), w, b, stride, 0, dilation, groups)
    assert y.shape == ref.shape and rel_err(y, ref) <= 1e-10


@pytest.mark.parametrize("blocks", [(1, 1), (2, 2), (64, 64)])
@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CASES)
def test_input_gradient_matches_autograd(xs, ws, stride, padding, dilation, groups, blocks):
    x, w, _ = _operands(xs, ws, groups, seed=1)
    x.requires_grad_()
    out = F.conv2d(F.pad(x, (padding[2], padding[3], padding[0], padding[1])), w, None, stride, 0, dilation, groups)
    gy = torch.randn_like(out)
    ref, = torch.autograd.grad(out, x, gy)
    gx = T.whole_plane_emulate(gy, w, None, list(xs), list(stride), list(padding), list(dilation), groups, True,
                               *blocks)
    assert gx.shape == ref.shape and rel_err(gx, ref) <= 1e-10


def test_float32():
    x, w, b = (t.float() for t in _operands((2, 8, 32, 32), (8, 1, 31, 31), 8))
    y = T.whole_plane_emulate(x, w, b, [2, 8, 32, 32], [1, 1], [15, 15, 15, 15], [1, 1], 8, False, 2, 3)
    assert rel_err(y, F.conv2d(x.double(), w.double(), b.double(), padding=15, groups=8)) <= 1e-5
