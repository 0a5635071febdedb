"""The CPU lane pipeline (csrc/fftconv/cpu/lane_pipeline.h): depthwise, stride-1
problems on small planes, a group of planes per vector. Every case first checks
that the pipeline takes the problem (so no test passes through the other
pipeline unnoticed), then compares forward and input gradient with the float64
reference, and with the chunked pipeline (backends.cpu_lanes = False)."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import fftconv_ext
from conftest import TOL32, TOL64_SMALL_PLANES, LanesOff, rel_err



def _mode(x_shape, w_shape, padding, dilation=(1, 1), stride=(1, 1), circular=False):
    """0: the lane pipeline declines; 1: takes it, kernel spectra gathered whole; 2: by column."""
    groups = x_shape[1] // w_shape[1]
    return fftconv_ext._testing.lane_pipeline_mode(list(x_shape), list(w_shape), list(stride), list(padding),
                                              list(dilation), groups, circular)


def _applies(*args, **kwargs):
    return _mode(*args, **kwargs) != 0


def _pad4(padding):
    ph, pw = padding
    return [ph, ph, pw, pw]


# (batch, channels, H, W, kernel, padding, dilation): transform lengths with
# factors 2, 3, 5 and 7, planes not a multiple of the lane count, one-row planes,
# even and non-square kernels, kernels larger than the map, asymmetric shapes
CASES = [
    (2, 8, 16, 16, (31, 31), (15, 15), (1, 1)),    # n = 32
    (3, 5, 16, 16, (13, 13), (6, 6), (1, 1)),      # n = 24, 15 planes
    (1, 7, 20, 22, (9, 9), (4, 4), (1, 1)),        # n = 24 x 26 -> 24 x 28 (a radix 7)
    (2, 3, 9, 9, (5, 5), (2, 2), (1, 1)),          # n = 12 x 12 -> 12 (radix 3), 6 planes
    (1, 4, 7, 12, (4, 6), (1, 2), (2, 1)),         # even kernels, dilation
    (2, 6, 14, 14, (31, 31), (15, 15), (1, 1)),    # taps dropped (docs/design.md §2)
    (1, 9, 5, 36, (3, 7), (1, 3), (1, 1)),         # rectangular, n_w = 40 (radix 5)
    (2, 4, 1, 50, (1, 9), (0, 4), (1, 1)),         # one-row planes (n_h = 1)
    (1, 2, 30, 30, (7, 7), (0, 0), (1, 1)),        # 'valid'
    (4, 16, 56, 56, (31, 31), (15, 15), (1, 1)),   # n = 72: kernel spectra gathered by column
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n, c, h, w, k, pad, dil", CASES)
def test_forward_and_input_gradient_match_reference(n, c, h, w, k, pad, dil, dtype):
    assert _mode((n, c, h, w), (c, 1) + k, _pad4(pad), dil) == (2 if h == 56 else 1)
    g = torch.Generator().manual_seed(n * 1000 + c * 10 + h)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    wt = torch.randn(c, 1, *k, generator=g, dtype=torch.float64)
    b = torch.randn(c, generator=g, dtype=torch.float64)
    ref = F.conv2d(x, wt, b, padding=pad, dilation=dil, groups=c)
    go = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    ref_gin = torch.nn.grad.conv2d_input(x.shape, wt, go, padding=pad, dilation=dil, groups=c)
    tol = TOL64_SMALL_PLANES if dtype == torch.float64 else TOL32
    args = ([1, 1], _pad4(pad), list(dil), c, False)
    y = torch.ops.fftconv.conv2d_forward(x.to(dtype), wt.to(dtype), b.to(dtype), *args)
    gin = torch.ops.fftconv.conv2d_grad_input(go.to(dtype), wt.to(dtype), list(x.shape), *args)
    assert y.dtype == dtype and gin.dtype == dtype
    assert rel_err(y, ref) <= tol
    assert rel_err(gin, ref_gin) <= tol
    with LanesOff():  # the chunked pipeline agrees
        y_off = torch.ops.fftconv.conv2d_forward(x.to(dtype), wt.to(dtype), b.to(dtype), *args)
        gin_off = torch.ops.fftconv.conv2d_grad_input(go.to(dtype), wt.to(dtype), list(x.shape), *args)
    assert rel_err(y, y_off) <= 2 * tol and rel_err(gin, gin_off) <= 2 * tol


# Tall planes with long columns, as a depth-folded volume gives (docs/design.md §19): column
# transforms past a plane's 256 points, data rows loaded 64 at a time (a partial last block),
# lanes not all in use.
TALL_CASES = [
    (1, 44, 404, 20, (89, 9), (44, 4)),   # 7 row blocks (the last of 20 rows); 44 planes, 4 lanes left over
    (2, 22, 300, 12, (33, 5), (16, 2)),   # 5 row blocks; a column transform of over 300 points
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n, c, h, w, k, pad", TALL_CASES)
def test_tall_planes_with_long_columns_match_reference(n, c, h, w, k, pad, dtype):
    assert _mode((n, c, h, w), (c, 1) + k, _pad4(pad)) != 0
    g = torch.Generator().manual_seed(h)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    wt = torch.randn(c, 1, *k, generator=g, dtype=torch.float64)
    b = torch.randn(c, generator=g, dtype=torch.float64)
    ref = F.conv2d(x, wt, b, padding=pad, groups=c)
    go = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    ref_gin = torch.nn.grad.conv2d_input(x.shape, wt, go, padding=pad, groups=c)
    tol = TOL64_SMALL_PLANES if dtype == torch.float64 else TOL32
    args = ([1, 1], _pad4(pad), [1, 1], c, False)
    y = torch.ops.fftconv.conv2d_forward(x.to(dtype), wt.to(dtype), b.to(dtype), *args)
    gin = torch.ops.fftconv.conv2d_grad_input(go.to(dtype), wt.to(dtype), list(x.shape), *args)
    assert rel_err(y, ref) <= tol
    assert rel_err(gin, ref_gin) <= tol
    with LanesOff():
        y_off = torch.ops.fftconv.conv2d_forward(x.to(dtype), wt.to(dtype), b.to(dtype), *args)
    assert rel_err(y, y_off) <= 2 * tol
    # both gradients (the lane backward takes tall planes within its memory bound)
    xr, wr = x.to(dtype).requires_grad_(), wt.to(dtype).requires_grad_()
    gx, gw = torch.autograd.grad(fftconv_ext.conv2d(xr, wr, padding=pad, groups=c, algo="fft"), (xr, wr),
                                 go.to(dtype))
    assert rel_err(gx, ref_gin) <= tol
    assert rel_err(gw, torch.nn.grad.conv2d_weight(x, wt.shape, go, padding=pad, groups=c)) <= 10 * tol


def test_folded_volumes_take_the_lanes_and_match_conv3d():
    # depthwise 9^3 on 12^3: its folded problem (192 data rows, 3 load blocks) has a column
    # transform of over 256 points; the lanes take it, forward and input gradient
    from fftconv_ext.problem import ConvProblem
    x = torch.randn(1, 5, 12, 12, 12, dtype=torch.float64)
    wt = torch.randn(5, 1, 9, 9, 9, dtype=torch.float64)
    fold = ConvProblem(3, tuple(x.shape), tuple(wt.shape), (1, 1, 1), ((4, 4),) * 3, (1, 1, 1), 5).fold
    assert fold.folded_spatial[0] + fold.padding4[0] > 256
    xf, wf = fold.fold_input(x), fold.fold_weight(wt)
    assert fftconv_ext._testing.lane_pipeline_mode(list(xf.shape), list(wf.shape), list(fold.stride2),
                                                   list(fold.padding4), list(fold.dilation2), 5, False) != 0
    xr = x.clone().requires_grad_()
    y = fftconv_ext.conv3d(xr, wt, padding=4, groups=5, algo="fft")
    ref = F.conv3d(x, wt, padding=4, groups=5)
    assert rel_err(y, ref) <= 1e-11
    go = torch.randn_like(ref)
    (gin,) = torch.autograd.grad(y, xr, go)
    assert rel_err(gin, torch.nn.grad.conv3d_input(x.shape, wt, go, padding=4, groups=5)) <= 1e-11


def test_circular_padding_and_autograd_through_the_lanes():
    # circular: n = H exactly (12 and 10: radices 3 and 5), no padding at all
    x = torch.randn(2, 5, 12, 10, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 1, 5, 3, dtype=torch.float64, requires_grad=True)
    assert _applies(x.shape, w.shape, [2, 2, 1, 1], circular=True)
    y = fftconv_ext.conv2d(x, w, padding=(2, 1), groups=5, padding_mode="circular", algo="fft")
    ref = F.conv2d(F.pad(x, (1, 1, 2, 2), mode="circular"), w, groups=5)
    assert rel_err(y, ref) <= TOL64_SMALL_PLANES
    assert torch.autograd.gradcheck(
        lambda a, b: fftconv_ext.conv2d(a, b, padding=(2, 1), groups=5, padding_mode="circular", algo="fft"),
        (x, w))


def test_problems_it_declines():
    assert not _applies((1, 4, 16, 16), (4, 1, 3, 3), [1] * 4, stride=(2, 2))   # stride
    assert not _applies((1, 4, 16, 16), (8, 1, 3, 3), [1] * 4)                   # two outputs per group
    assert not _applies((1, 4, 16, 16), (4, 4, 3, 3), [1] * 4)                   # dense
    assert not _applies((1, 2, 300, 300), (2, 1, 3, 3), [1] * 4)                 # planes too large
    assert not _applies((1, 2, 11, 11), (2, 1, 3, 3), [1] * 4, circular=True)   # length 11


def test_cache_off_takes_the_chunked_pipeline_and_agrees():
    x = torch.randn(2, 8, 16, 16, dtype=torch.float64)
    w = torch.randn(8, 1, 13, 13, dtype=torch.float64)
    y_on = fftconv_ext.conv2d(x, w, padding=6, groups=8, algo="fft")
    limit = fftconv_ext.cache_info()["limit"]
    fftconv_ext.set_cache_limit(0)
    try:
        y_off = fftconv_ext.conv2d(x, w, padding=6, groups=8, algo="fft")
    finally:
        fftconv_ext.set_cache_limit(limit)
    assert rel_err(y_on, y_off) <= TOL64_SMALL_PLANES
    assert rel_err(y_on, F.conv2d(x, w, padding=6, groups=8)) <= TOL64_SMALL_PLANES


@given(st.data())
def test_hypothesis_lanes(data):
    n = data.draw(st.integers(1, 3))
    c = data.draw(st.integers(1, 11))
    h = data.draw(st.integers(1, 40))
    w = data.draw(st.integers(1, 40))
    kh = data.draw(st.integers(1, 2 * h + 3))
    kw = data.draw(st.integers(1, 2 * w + 3))
    ph = data.draw(st.integers(0, kh - 1))
    pw = data.draw(st.integers(0, kw - 1))
    if h + 2 * ph < kh or w + 2 * pw < kw:
        return
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    wt = torch.randn(c, 1, kh, kw, dtype=torch.float64)
    b = torch.randn(c, dtype=torch.float64)
    y = fftconv_ext.conv2d(x, wt, b, padding=(ph, pw), groups=c, algo="fft")
    assert rel_err(y, F.conv2d(x, wt, b, padding=(ph, pw), groups=c)) <= TOL64_SMALL_PLANES


_BASELINE_CHECK = """
import torch, torch.nn.functional as F, fftconv_ext, fftconv_ext._testing
torch.manual_seed(0)
torch.set_num_threads(2)
# (shape, kernel, padding, the lane pipeline's mode: 1 kernel spectra gathered whole, 2 by column)
for (n, c, h, w), (kh, kw), (ph, pw), mode in (((3, 13, 20, 18), (9, 7), (4, 3), 1),
                                              ((4, 16, 56, 56), (31, 31), (15, 15), 2)):
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
        x = torch.randn(n, c, h, w, dtype=torch.float64)
        wt = torch.randn(c, 1, kh, kw, dtype=torch.float64)
        args = ([1, 1], [ph, ph, pw, pw], [1, 1], c, False)
        assert fftconv_ext._testing.lane_pipeline_mode(list(x.shape), list(wt.shape), *args) == mode
        ref = F.conv2d(x, wt, padding=(ph, pw), groups=c)
        g = torch.randn_like(ref)
        ref_gin = torch.nn.grad.conv2d_input(x.shape, wt, g, padding=(ph, pw), groups=c)
        ref_gw = torch.nn.grad.conv2d_weight(x, wt.shape, g, padding=(ph, pw), groups=c)
        y = torch.ops.fftconv.conv2d_forward(x.to(dtype), wt.to(dtype), None, *args)
        gin = torch.ops.fftconv.conv2d_grad_input(g.to(dtype), wt.to(dtype), list(x.shape), *args)
        # the lane backward (both gradients at once) too
        assert fftconv_ext._testing.lane_backward_mode(list(x.shape), list(wt.shape), *args, True,
                                                  dtype == torch.float64) != 0
        gin2, gw = torch.ops.fftconv.conv2d_backward(g.to(dtype), x.to(dtype), wt.to(dtype), *args)
        for a, e in ((y, ref), (gin, ref_gin), (gin2, ref_gin), (gw, ref_gw)):
            err = ((a.double() - e).norm() / e.norm()).item()
            assert err <= tol, (dtype, mode, err)
print("ok")
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("baseline", [False, True])
def test_both_instruction_set_builds(baseline):
    # The lane pipeline and the lane backward are built for baseline x86-64 and for
    # AVX2+FMA, chosen at run time once per process; FFTCONV_CPU_BASELINE=1 forces the first.
    env = {k: v for k, v in os.environ.items() if k not in ("FFTCONV_CPU_BASELINE", "FFTCONV_CPU_LANES")}
    if baseline:
        env["FFTCONV_CPU_BASELINE"] = "1"
    r = subprocess.run([sys.executable, "-c", _BASELINE_CHECK], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


def test_bad_input_on_a_lane_problem_raises_and_inputs_stay_unmodified():
    # the checks run before any pipeline: the same errors whichever pipeline would run
    x = torch.randn(2, 8, 16, 16)
    w = torch.randn(8, 1, 13, 13)
    assert _applies(x.shape, w.shape, [6] * 4)
    with pytest.raises(ValueError, match="weight"):
        fftconv_ext.conv2d(x, torch.randn(8, 2, 13, 13), padding=6, groups=8, algo="fft")
    with pytest.raises((TypeError, ValueError, RuntimeError), match="dtype|float"):
        fftconv_ext.conv2d(x.to(torch.int32), w, padding=6, groups=8, algo="fft")
    with pytest.raises((TypeError, ValueError, RuntimeError), match="dtype|float"):
        fftconv_ext.conv2d(x, w.double(), padding=6, groups=8, algo="fft")
    x0, w0 = x.clone(), w.clone()
    fftconv_ext.conv2d(x, w, padding=6, groups=8, algo="fft")
    assert torch.equal(x, x0) and torch.equal(w, w0)
