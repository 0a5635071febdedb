"""The CPU lane backward (csrc/fftconv/cpu/lane_pipeline.h, lane_backward):
both gradients, or the weight gradient alone, of depthwise stride-1 problems on
small planes, a group of channels per vector over the whole batch. Every case
first checks that it takes the problem (so no test passes through the chunked
backward unnoticed), then compares with float64 autograd through F.conv2d and
with the chunked backward (backends.cpu_lanes = False)."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import fftconv_ext
from conftest import TOL32, TOL64_SMALL_PLANES, LanesOff, rel_err



def _mode(x_shape, w_shape, padding, dilation=(1, 1), stride=(1, 1), circular=False, input_grad=True,
          dtype=torch.float32):
    groups = x_shape[1] // w_shape[1]
    return fftconv_ext._testing.lane_backward_mode(list(x_shape), list(w_shape), list(stride), list(padding),
                                              list(dilation), groups, circular, input_grad,
                                              dtype == torch.float64)


def _reference_grads(x, w, go, padding, dilation, circular=False):
    """(grad_input, grad_weight) of F.conv2d in float64; padding (top, bottom, left, right)."""
    xd = x.double().requires_grad_()
    wd = w.double().requires_grad_()
    pad = (padding[2], padding[3], padding[0], padding[1])
    y = F.conv2d(F.pad(xd, pad, mode="circular" if circular else "constant"), wd, dilation=dilation,
                 groups=x.shape[1])
    return torch.autograd.grad(y, (xd, wd), go.double())


# (batch, channels, H, W, kernel, padding (t, b, l, r), dilation, expected mode)
CASES = [
    (2, 16, 16, 16, (13, 13), (6, 6, 6, 6), (1, 1), 1),      # n = 24 (radix 3)
    (3, 13, 20, 22, (9, 9), (4, 4, 4, 4), (1, 1), 1),        # a partial channel group, n_w = 28 (radix 7)
    (1, 16, 7, 12, (4, 6), (1, 2, 3, 2), (2, 1), 1),         # even kernels, asymmetric padding, dilation
    (2, 16, 14, 14, (31, 31), (15, 15, 15, 15), (1, 1), 1),  # taps dropped (docs/design.md §2)
    (1, 16, 5, 36, (3, 7), (1, 1, 3, 3), (1, 1), 1),         # n_w = 40 (radix 5)
    (2, 16, 1, 50, (1, 9), (0, 0, 4, 4), (1, 1), 1),         # one-row planes (n_h = 1)
    (1, 16, 30, 30, (7, 7), (0, 0, 0, 0), (1, 1), 1),        # 'valid': output smaller than the input
    (2, 16, 10, 10, (3, 3), (5, 5, 5, 5), (1, 1), 1),        # output larger than the input
    (2, 16, 32, 32, (31, 31), (15, 15, 15, 15), (1, 1), 2),  # kernel spectra gathered by column
    (1, 16, 56, 56, (31, 31), (15, 15, 15, 15), (1, 1), 2),  # n = 72
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n, c, h, w, k, pad, dil, mode", CASES)
def test_both_gradients_and_the_weight_gradient_alone(n, c, h, w, k, pad, dil, mode, dtype):
    x_shape, w_shape = (n, c, h, w), (c, 1) + k
    assert _mode(x_shape, w_shape, pad, dil, dtype=dtype) == mode
    assert _mode(x_shape, w_shape, pad, dil, input_grad=False, dtype=dtype) != 0
    g = torch.Generator().manual_seed(n * 1000 + c * 10 + h)
    x = torch.randn(x_shape, generator=g, dtype=torch.float64).to(dtype)
    wt = torch.randn(w_shape, generator=g, dtype=torch.float64).to(dtype)
    out_shape = F.conv2d(F.pad(x, (pad[2], pad[3], pad[0], pad[1])), wt, dilation=dil, groups=c).shape
    go = torch.randn(out_shape, generator=g, dtype=torch.float64).to(dtype)
    ref_gin, ref_gw = _reference_grads(x, wt, go, pad, dil)
    args = ([1, 1], list(pad), list(dil), c, False)
    x0, w0, g0 = x.clone(), wt.clone(), go.clone()
    gin, gw = torch.ops.fftconv.conv2d_backward(go, x, wt, *args)
    gw_alone = torch.ops.fftconv.conv2d_grad_weight(go, x, list(w_shape), *args)
    assert torch.equal(x, x0) and torch.equal(wt, w0) and torch.equal(go, g0)
    tol = TOL64_SMALL_PLANES if dtype == torch.float64 else TOL32
    assert gin.dtype == dtype and gw.dtype == dtype
    assert rel_err(gin, ref_gin) <= tol
    assert rel_err(gw, ref_gw) <= tol
    assert rel_err(gw_alone, ref_gw) <= tol
    with LanesOff():  # the chunked backward agrees
        gin_off, gw_off = torch.ops.fftconv.conv2d_backward(go, x, wt, *args)
    assert rel_err(gin, gin_off) <= 2 * tol and rel_err(gw, gw_off) <= 2 * tol


def test_circular_padding_and_gradcheck_through_the_lanes():
    x = torch.randn(2, 8, 12, 10, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, 1, 5, 3, dtype=torch.float64, requires_grad=True)
    assert _mode(x.shape, w.shape, [2, 2, 1, 1], circular=True, dtype=torch.float64) != 0
    y = fftconv_ext.conv2d(x, w, padding=(2, 1), groups=8, padding_mode="circular", algo="fft")
    go = torch.randn_like(y)
    gin, gw = torch.autograd.grad(y, (x, w), go)
    ref_gin, ref_gw = _reference_grads(x.detach(), w.detach(), go, (2, 2, 1, 1), (1, 1), circular=True)
    assert rel_err(gin, ref_gin) <= TOL64_SMALL_PLANES and rel_err(gw, ref_gw) <= TOL64_SMALL_PLANES
    assert torch.autograd.gradcheck(
        lambda a, b: fftconv_ext.conv2d(a, b, padding=(2, 1), groups=8, padding_mode="circular", algo="fft"),
        (x, w))


def test_gradcheck_zero_padding():
    x = torch.randn(2, 8, 6, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, 1, 3, 5, dtype=torch.float64, requires_grad=True)
    assert _mode(x.shape, w.shape, [1, 1, 2, 2], dtype=torch.float64) != 0
    assert torch.autograd.gradcheck(lambda a, b: fftconv_ext.conv2d(a, b, padding=(1, 2), groups=8, algo="fft"),
                                    (x, w))


def test_problems_it_declines():
    torch_threads = torch.get_num_threads()
    assert not _mode((1, 16, 16, 16), (16, 1, 3, 3), [1] * 4, stride=(2, 2))   # stride
    assert not _mode((1, 16, 16, 16), (32, 1, 3, 3), [1] * 4)                   # two outputs per group
    assert not _mode((1, 16, 16, 16), (16, 4, 3, 3), [1] * 4)                   # grouped, not depthwise
    assert not _mode((1, 16, 200, 200), (16, 1, 3, 3), [1] * 4)                 # planes too large
    if torch_threads > 1:
        # one group of 8 channels cannot keep two threads busy: the chunked backward runs
        assert not _mode((4, 8, 16, 16), (8, 1, 3, 3), [1] * 4)
        assert _mode((4, 8, 16, 16), (8, 1, 3, 3), [1] * 4, dtype=torch.float64)  # 2 groups of 4


def test_cache_off_still_gives_the_weight_gradient_and_agrees():
    # with the spectrum cache off the input gradient's kernel spectra are made per block: the lane
    # backward declines both gradients then (the chunked backward runs) but agrees
    x = torch.randn(2, 16, 16, 16, dtype=torch.float64)
    w = torch.randn(16, 1, 13, 13, dtype=torch.float64)
    go = torch.randn(2, 16, 16, 16, dtype=torch.float64)
    args = ([1, 1], [6] * 4, [1, 1], 16, False)
    on = torch.ops.fftconv.conv2d_backward(go, x, w, *args)
    limit = fftconv_ext.cache_info()["limit"]
    fftconv_ext.set_cache_limit(0)
    try:
        off = torch.ops.fftconv.conv2d_backward(go, x, w, *args)
    finally:
        fftconv_ext.set_cache_limit(limit)
    assert rel_err(on[0], off[0]) <= TOL64_SMALL_PLANES and rel_err(on[1], off[1]) <= TOL64_SMALL_PLANES


@given(st.data())
def test_hypothesis_lane_backward(data):
    n = data.draw(st.integers(1, 3))
    c = data.draw(st.integers(4, 20))
    h = data.draw(st.integers(1, 36))
    w = data.draw(st.integers(1, 36))
    kh = data.draw(st.integers(1, 2 * h + 3))
    kw = data.draw(st.integers(1, 2 * w + 3))
    pad = [data.draw(st.integers(0, kh - 1)), 0, data.draw(st.integers(0, kw - 1)), 0]
    pad[1], pad[3] = data.draw(st.integers(0, kh - 1)), data.draw(st.integers(0, kw - 1))
    dil = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    if h + pad[0] + pad[1] < dil[0] * (kh - 1) + 1 or w + pad[2] + pad[3] < dil[1] * (kw - 1) + 1:
        return
    if not _mode((n, c, h, w), (c, 1, kh, kw), pad, dil, dtype=torch.float64):
        return
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    wt = torch.randn(c, 1, kh, kw, dtype=torch.float64)
    out_shape = F.conv2d(F.pad(x, (pad[2], pad[3], pad[0], pad[1])), wt, dilation=dil, groups=c).shape
    go = torch.randn(out_shape, dtype=torch.float64)
    gin, gw = torch.ops.fftconv.conv2d_backward(go, x, wt, [1, 1], pad, list(dil), c, False)
    ref_gin, ref_gw = _reference_grads(x, wt, go, pad, dil)
    assert rel_err(gin, ref_gin) <= TOL64_SMALL_PLANES and rel_err(gw, ref_gw) <= TOL64_SMALL_PLANES


def test_bad_input_on_a_lane_backward_problem_raises_and_inputs_stay_unmodified():
    # the entry's checks run before any pipeline: the same errors whichever backward would run
    x = torch.randn(2, 16, 16, 16)
    w = torch.randn(16, 1, 13, 13)
    go = torch.randn(2, 16, 16, 16)
    args = ([1, 1], [6] * 4, [1, 1], 16, False)
    assert _mode(x.shape, w.shape, [6] * 4) != 0
    with pytest.raises(RuntimeError, match="grad_output has shape"):
        torch.ops.fftconv.conv2d_backward(torch.randn(2, 16, 15, 16), x, w, *args)
    with pytest.raises(RuntimeError, match="grad_output dtype"):
        torch.ops.fftconv.conv2d_backward(go.double(), x, w, *args)
    with pytest.raises(RuntimeError, match="weight dtype"):
        torch.ops.fftconv.conv2d_backward(go, x, w.double(), *args)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        torch.ops.fftconv.conv2d_grad_weight(go.int(), x.int(), list(w.shape), *args)
    x0, w0, g0 = x.clone(), w.clone(), go.clone()
    torch.ops.fftconv.conv2d_backward(go, x, w, *args)
    torch.ops.fftconv.conv2d_grad_weight(go, x, list(w.shape), *args)
    assert torch.equal(x, x0) and torch.equal(w, w0) and torch.equal(go, g0)
