"""Parity of fftconv_ext.conv1d/conv2d with torch.nn.Conv1d/Conv2d in float64."""
import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fftconv_ext
from conftest import TOL64, random_case, reference_conv, rel_err, fft_conv1d, fft_conv2d


def _case(n, c_in, c_out, size, kernel, groups, seed=0, dtype=torch.float64, bias=True):
    return random_case((n, c_in, *size), (c_out, c_in // groups, *kernel), bias=bias, dtype=dtype, seed=seed)


GRID_2D = [
    # (size, kernel, stride, padding, dilation, groups, c_in, c_out)
    ((16, 16), (3, 3), 1, 1, 1, 1, 3, 4),
    ((17, 13), (5, 4), 1, 0, 1, 1, 2, 3),             # odd/even, non-square, valid
    ((20, 21), (7, 7), 1, "same", 1, 4, 4, 4),        # depthwise 'same'
    ((20, 21), (6, 4), 1, "same", 1, 2, 4, 6),        # even kernel 'same' (asymmetric pad)
    ((20, 21), (5, 5), 1, "valid", 1, 1, 2, 2),
    ((19, 23), (5, 3), (2, 3), (2, 1), 1, 1, 3, 2),   # stride
    ((19, 23), (3, 5), 1, (3, 4), (2, 3), 1, 2, 2),   # dilation
    ((19, 23), (3, 3), (2, 2), 2, (2, 2), 2, 4, 2),   # stride + dilation + groups
    ((18, 18), (5, 5), 1, 2, 1, 2, 4, 8),             # groups with channel multiplier
    ((18, 18), (5, 5), 1, 2, 1, 3, 6, 3),             # groups, fewer outputs
    ((8, 9), (15, 13), 1, (7, 6), 1, 2, 2, 2),        # kernel larger than the map
    ((14, 14), (31, 31), 1, 15, 1, 3, 3, 3),          # 31x31 on 14x14 (docs/design.md §2)
    ((14, 14), (31, 31), 1, "same", 1, 3, 3, 3),
    ((12, 10), (12, 10), 1, 0, 1, 1, 2, 3),           # kernel == input: one output
    ((1, 30), (1, 9), 1, (0, 4), 1, 1, 2, 2),         # height 1
    ((30, 1), (9, 1), 1, (4, 0), 1, 1, 2, 2),         # width 1
    ((11, 11), (3, 3), 4, 0, 1, 1, 2, 2),             # stride > kernel
    ((9, 9), (2, 2), 1, 5, 1, 1, 1, 1),               # padding > kernel: outputs of padding only
]


@pytest.mark.parametrize("size,kernel,stride,padding,dilation,groups,c_in,c_out", GRID_2D)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_parity_float64(size, kernel, stride, padding, dilation, groups, c_in, c_out, bias):
    x, w, b = _case(2, c_in, c_out, size, kernel, groups, bias=bias)
    y = fft_conv2d(x, w, b, stride, padding, dilation, groups)
    ref = reference_conv(x, w, b, stride, padding, dilation, groups)
    assert y.shape == ref.shape and y.dtype == torch.float64
    assert rel_err(y, ref) <= TOL64


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("size,kernel,stride,padding,dilation", [
    ((16, 15), (5, 5), 1, 2, 1),
    ((16, 15), (4, 3), 1, "same", 1),
    ((16, 15), (3, 3), (2, 1), (1, 2), 1),
    ((16, 15), (3, 3), 1, (2, 1), (2, 1)),
    ((9, 10), (3, 3), 1, (3, 4), 1),   # circular: padding wider than the kernel reach
    ((12, 12), (7, 7), 2, 3, 1),
])
def test_conv2d_padding_modes(mode, size, kernel, stride, padding, dilation):
    x, w, b = _case(2, 4, 4, size, kernel, 2)
    y = fft_conv2d(x, w, b, stride, padding, dilation, 2, padding_mode=mode)
    ref = reference_conv(x, w, b, stride, padding, dilation, 2, padding_mode=mode)
    assert y.shape == ref.shape
    assert rel_err(y, ref) <= TOL64


GRID_1D = [
    (50, 7, 1, 3, 1, 1, 2, 3),
    (50, 8, 1, "same", 1, 4, 4, 4),
    (51, 5, 3, 2, 1, 1, 2, 2),
    (51, 5, 1, 4, 3, 2, 4, 2),
    (40, 65, 1, 32, 1, 2, 2, 2),   # kernel longer than the sequence
    (64, 64, 1, "valid", 1, 1, 1, 1),
]


@pytest.mark.parametrize("length,k,stride,padding,dilation,groups,c_in,c_out", GRID_1D)
@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect"])
def test_conv1d_parity_float64(length, k, stride, padding, dilation, groups, c_in, c_out, mode):
    x, w, b = _case(3, c_in, c_out, (length,), (k,), groups)
    try:
        ref = reference_conv(x, w, b, stride, padding, dilation, groups, padding_mode=mode)
    except RuntimeError:
        with pytest.raises(RuntimeError):
            fft_conv1d(x, w, b, stride, padding, dilation, groups, padding_mode=mode)
        return
    y = fft_conv1d(x, w, b, stride, padding, dilation, groups, padding_mode=mode)
    assert y.shape == ref.shape
    assert rel_err(y, ref) <= TOL64


def test_unbatched_and_empty_batch():
    x, w, b = _case(1, 3, 6, (11, 12), (3, 5), 3)
    y = fft_conv2d(x[0], w, b, padding=1, groups=3)
    ref = reference_conv(x[0], w, b, padding=1, groups=3)
    assert y.shape == ref.shape == (6, 11, 10)
    assert rel_err(y, ref) <= TOL64
    empty = torch.empty(0, 3, 11, 12, dtype=torch.float64)
    assert fft_conv2d(empty, w, b, padding=1, groups=3).shape == (0, 6, 11, 10)
    y1 = fft_conv1d(x[0, :, 0], w[:, :, 0], b, padding=2, groups=3)
    assert rel_err(y1, reference_conv(x[0, :, 0], w[:, :, 0], b, padding=2, groups=3)) <= TOL64


def test_noncontiguous_and_channels_last():
    x, w, b = _case(2, 4, 4, (16, 18), (5, 5), 4)
    xcl = x.contiguous(memory_format=torch.channels_last)
    y = fft_conv2d(xcl, w, b, padding=2, groups=4)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(y, reference_conv(x, w, b, padding=2, groups=4)) <= TOL64
    xt = x.transpose(2, 3)  # a strided view
    assert rel_err(fft_conv2d(xt, w, b, padding=2, groups=4),
                   reference_conv(xt.contiguous(), w, b, padding=2, groups=4)) <= TOL64
    xs = torch.randn(2, 8, 16, 18, dtype=torch.float64)[:, ::2]
    wt = torch.randn(4, 5, 5, 1, dtype=torch.float64).permute(0, 3, 1, 2)
    assert rel_err(fft_conv2d(xs, wt, padding=2, groups=4),
                   reference_conv(xs.contiguous(), wt.contiguous(), padding=2, groups=4)) <= TOL64


def test_inputs_not_modified():
    x, w, b = _case(2, 4, 4, (16, 18), (5, 5), 4)
    copies = [t.clone() for t in (x, w, b)]
    fft_conv2d(x, w, b, padding="same", groups=4, padding_mode="circular")
    for t, c in zip((x, w, b), copies):
        assert torch.equal(t, c)


def test_repeated_calls_bitwise_identical():
    x, w, b = _case(4, 8, 8, (24, 24), (9, 9), 8, dtype=torch.float32)
    y1 = fft_conv2d(x, w, b, padding=4, groups=8)
    y2 = fft_conv2d(x, w, b, padding=4, groups=8)
    assert torch.equal(y1, y2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_computed_in_float32(dtype):
    x, w, b = _case(2, 4, 4, (20, 20), (7, 7), 4, dtype=dtype)
    y = fft_conv2d(x, w, b, padding=3, groups=4)
    assert y.dtype == dtype
    ref = reference_conv(x, w, b, padding=3, groups=4)
    # one rounding to the output dtype on top of a float32 computation
    tol = 2e-3 if dtype == torch.float16 else 1e-2
    assert rel_err(y, ref) <= tol


@given(data=st.data())
def test_hypothesis_conv2d(data):
    _conv2d_case(data)



def _conv2d_case(data):
    groups = data.draw(st.sampled_from([1, 2, 3]), label="groups")
    cpg = data.draw(st.integers(1, 2), label="cpg")
    opg = data.draw(st.integers(1, 2), label="opg")
    h = data.draw(st.integers(1, 24), label="h")
    w_ = data.draw(st.integers(1, 24), label="w")
    kh = data.draw(st.integers(1, 12), label="kh")
    kw = data.draw(st.integers(1, 12), label="kw")
    dh, dw = data.draw(st.integers(1, 3), label="dh"), data.draw(st.integers(1, 3), label="dw")
    sh, sw = data.draw(st.integers(1, 3), label="sh"), data.draw(st.integers(1, 3), label="sw")
    same = sh == 1 and sw == 1 and data.draw(st.booleans(), label="same")
    if same:
        padding = "same"
    else:
        padding = (data.draw(st.integers(0, 8), label="ph"), data.draw(st.integers(0, 8), label="pw"))
    mode = data.draw(st.sampled_from(["zeros", "zeros", "circular", "reflect", "replicate"]), label="mode")
    n = data.draw(st.integers(1, 2), label="n")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    dtype = data.draw(st.sampled_from([torch.float64, torch.float64, torch.float32]), label="dtype")
    x, w, b = _case(n, groups * cpg, groups * opg, (h, w_), (kh, kw), groups, seed=seed, dtype=dtype)
    layout = data.draw(st.sampled_from(["contiguous", "channels_last", "transposed", "empty"]), label="layout")
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":  # a non-contiguous view with the same values
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    elif layout == "empty":
        x = x[:0]
    try:
        ref = reference_conv(x, w, b, (sh, sw), padding, (dh, dw), groups, padding_mode=mode)
    except (RuntimeError, ValueError, NotImplementedError):  # the torch reference refuses this case, so ours must too
        with pytest.raises((RuntimeError, ValueError)):
            fft_conv2d(x, w, b, (sh, sw), padding, (dh, dw), groups, padding_mode=mode)
        return
    y = fft_conv2d(x, w, b, (sh, sw), padding, (dh, dw), groups, padding_mode=mode)
    assert y.shape == ref.shape and y.dtype == dtype
    if x.numel() and dtype == torch.float64:
        assert rel_err(y, ref) <= TOL64
    elif x.numel():
        # float32: relative to the magnitude of the summed terms (cancellation can make the result
        # small), plus the FFT's own rounding, which is spread over every output and scales with the
        # energy of the whole transformed planes (~eps * log2(N) * |x| * |w| by Parseval), not with
        # the few terms one output sums (a 2-column input with a 13-wide dilated kernel found it)
        scale = reference_conv(x.abs(), w.abs(), b.abs(), (sh, sw), padding, (dh, dw), groups, padding_mode=mode)
        fft_rounding = 1e-6 * x.double().norm() * w.double().norm()
        assert (y.double() - ref).norm() <= 1e-5 * scale.norm() + fft_rounding


@pytest.mark.parametrize("size,k", [((56, 56), 31), ((224, 224), 51)])
def test_float32_large_kernels(size, k):
    x, w, b = _case(1 if size[0] > 100 else 2, 4, 4, size, (k, k), 4, dtype=torch.float32)
    y = fft_conv2d(x, w, b, padding=k // 2, groups=4)
    ref = reference_conv(x, w, b, padding=k // 2, groups=4)  # float64 reference
    assert y.dtype == torch.float32
    assert rel_err(y, ref) <= 1e-5


def _next_smooth(n):
    """Smallest even 2,3,5,7-smooth number >= n (odd lengths are slow in real FFTs)."""
    def smooth(m):
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        return m == 1
    while not smooth(n) or n % 2:
        n += 1
    return n


def _fft_length(n):
    """The planner's length: _next_smooth(n), or the next even 2,3,5-smooth size
    when _next_smooth(n) has a factor 7 and that one is at most 3% longer."""
    m = _next_smooth(n)
    if m % 7:
        return m
    alt = _next_smooth(m + 1)
    while alt % 7 == 0:
        alt = _next_smooth(alt + 1)
    return alt if 100 * alt <= 103 * m else m


@pytest.mark.parametrize("h", [14, 31, 56, 57, 64])
def test_alias_free_length_for_same_padding(h):
    """Rule 1: with 'same' padding and k <= H the operator transforms
    about H + k//2 points per axis (next_fast_even, see _fft_length), not the
    textbook H + k - 1."""
    for k in range(3, h + 1, 2):
        n = fftconv_ext._C.fft_shape([1, 1, 1, h], [1, 1, 1, k], [1, 1], [0, 0, k // 2, k // 2],
                                        [1, 1], 1, False)[1]
        assert n == _fft_length(h + k // 2)
        assert n <= _fft_length(h + k - 1)


def test_dropped_taps_shrink_the_transform():
    """Rule 2: a 31x31 'same' kernel on a 14x14 map acts like a 27x27 one
    (27 points per axis, rounded up to the even 28)."""
    n = fftconv_ext._C.fft_shape([1, 1, 14, 14], [1, 1, 31, 31], [1, 1], [15] * 4, [1, 1], 1, False)
    assert list(n) == [28, 28]
    x, w, b = _case(1, 2, 2, (14, 14), (31, 31), 2)
    assert rel_err(fft_conv2d(x, w, b, padding=15, groups=2),
                   reference_conv(x, w, b, padding=15, groups=2)) <= TOL64


_MULTIPLY_CHECK = """
import torch, torch.nn.functional as F, fftconv_ext
torch.manual_seed(0)
for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
    x = torch.randn(3, 40, 21, 18, dtype=dtype, requires_grad=True)
    w = torch.randn(40, 1, 9, 7, dtype=dtype, requires_grad=True)
    y = fftconv_ext.conv2d(x, w, padding=(4, 3), groups=40, algo="fft")
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = F.conv2d(xd, wd, padding=(4, 3), groups=40)
    g = torch.randn_like(ref)
    got = torch.autograd.grad(y, (x, w), g.to(dtype))
    want = torch.autograd.grad(ref, (xd, wd), g)
    for a, e in ((y, ref),) + tuple(zip(got, want)):
        err = ((a.double() - e).norm() / e.norm()).item()
        assert err <= tol, (dtype, err)
print("ok")
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("baseline", [False, True])
def test_depthwise_multiply_loops_match_reference(baseline):
    # The depthwise spectral multiply has a baseline loop and an AVX2+FMA one
    # chosen at run time (once per process); FFTCONV_CPU_BASELINE=1 forces the
    # baseline one, so both are checked on a machine that has AVX2.
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "FFTCONV_CPU_BASELINE"}
    if baseline:
        env["FFTCONV_CPU_BASELINE"] = "1"
    r = subprocess.run([sys.executable, "-c", _MULTIPLY_CHECK], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]
