"""NaN and Inf land exactly where F.conv2d puts them, forward and backward."""
import pytest
import torch
import torch.nn.functional as F

from conftest import fft_conv2d


def _tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 12, 13, generator=g, dtype=torch.float64)
    w = torch.randn(4, 2, 5, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    return x, w, b


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", ["input", "weight"])
@pytest.mark.parametrize("circular", [False, True])
def test_nonfinite_forward_and_backward(value, where, circular):
    x, w, b = _tensors()
    if where == "input":
        x[1, 2, 5, 7] = value
    else:
        w[3, 1, 2, 0] = value
    mode = "circular" if circular else "zeros"
    kw = dict(stride=(1, 2), padding=(2, 1), groups=2)
    xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
    xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
    y = fft_conv2d(xs, ws, bs, padding_mode=mode, **kw)
    if circular:
        ref = F.conv2d(F.pad(xr, (1, 1, 2, 2), mode="circular"), wr, br, stride=(1, 2), groups=2)
    else:
        ref = F.conv2d(xr, wr, br, **kw)
    torch.testing.assert_close(y, ref, equal_nan=True, rtol=1e-10, atol=1e-10)
    assert torch.isfinite(y).any()  # the non-finite values stay local
    g = torch.randn_like(ref)
    gs = torch.autograd.grad(y, (xs, ws, bs), g)
    gr = torch.autograd.grad(ref, (xr, wr, br), g)
    for a, r in zip(gs, gr):
        torch.testing.assert_close(a, r, equal_nan=True, rtol=1e-10, atol=1e-10)


def test_nonfinite_grad_output():
    x, w, b = _tensors(1)
    xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = fft_conv2d(xs, ws, padding=2, groups=2)
    ref = F.conv2d(xr, wr, padding=2, groups=2)
    g = torch.randn_like(ref)
    g[0, 1, 3, 3] = float("nan")
    for a, r in zip(torch.autograd.grad(y, (xs, ws), g), torch.autograd.grad(ref, (xr, wr), g)):
        torch.testing.assert_close(a, r, equal_nan=True, rtol=1e-10, atol=1e-10)


def test_finite_inputs_stay_on_the_fft_path():
    # huge but finite values must not be mistaken for non-finite ones
    x, w, b = _tensors(2)
    x = x * 1e100
    y = fft_conv2d(x, w, b, padding=2, groups=2)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, F.conv2d(x, w, b, padding=2, groups=2), rtol=1e-9, atol=0)
